// Plays the server's TCP audio stream through an AudioSource: a network thread fills a lock-free ring buffer,
// OnAudioFilterRead (Unity's audio thread) copies from it, with no allocation and no lock.
using System;
using System.Collections;
using UnityEngine;

namespace Adaptive.Soundtrack
{
    /// <summary>
    /// Put it on a GameObject with an AudioSource (no clip: this filter is then the source) next to, or
    /// pointing at, the <see cref="AdaptiveSoundtrack"/>. When the welcome arrives it connects to the
    /// stream, prefills <see cref="targetLatencySeconds"/>, and plays; underruns play zeros and are counted
    /// (<see cref="Underruns"/>). If Unity's output rate is not the session's, the stream is resampled
    /// linearly (a warning says so; set Project Settings > Audio > System Sample Rate to 48000 to avoid it).
    /// It also tells the soundtrack which dspTime each server frame is heard at, so beat events land on the
    /// beats you hear.
    /// </summary>
    [RequireComponent(typeof(AudioSource))]
    [AddComponentMenu("Adaptive Soundtrack/Adaptive Stream Player")]
    public class AdaptiveStreamPlayer : MonoBehaviour
    {
        [Tooltip("Empty: AdaptiveSoundtrack.Instance")] public AdaptiveSoundtrack soundtrack;
        [Tooltip("Audio buffered before playing starts (and again after an underrun), seconds")]
        [Range(0.02f, 0.5f)] public float targetLatencySeconds = 0.08f;
        [Tooltip("Ring buffer size, seconds (must exceed the target latency)")] public float bufferSeconds = 1f;

        volatile PcmStreamPlayback playback; // read by the audio thread
        TcpAudioReceiver receiver;
        PcmRingBuffer ring;

        public long Underruns { get { var p = playback; return p == null ? 0 : p.Underruns; } }
        public long SkippedFrames { get { var p = playback; return p == null ? 0 : p.SkippedFrames; } }
        public long SequenceGaps { get { return receiver == null ? 0 : receiver.SequenceGaps; } }
        /// <summary>Buffered audio now, seconds.</summary>
        public float BufferedSeconds { get { return ring == null || playback == null ? 0f : ring.AvailableFrames / (float)playback.OutputRateHz; } }

        IEnumerator Start()
        {
            var target = soundtrack != null ? soundtrack : AdaptiveSoundtrack.Instance;
            if (target == null)
            {
                Debug.LogError("AdaptiveStreamPlayer: no AdaptiveSoundtrack in the scene", this);
                yield break;
            }
            while (target.Welcome == null) yield return null;
            var welcome = target.Welcome;
            if (welcome.AudioTcpPort == 0)
            {
                Debug.LogError("AdaptiveStreamPlayer: the server has no TCP audio stream (audio_tcp_port = 0 in its welcome)", this);
                yield break;
            }
            int outputRate = AudioSettings.outputSampleRate;
            if (outputRate != welcome.SampleRateHz)
                Debug.LogWarning("AdaptiveStreamPlayer: Unity outputs " + outputRate + " Hz, the session runs at " + welcome.SampleRateHz +
                                 " Hz: resampling linearly. Set Project Settings > Audio > System Sample Rate to " + welcome.SampleRateHz +
                                 " for bit-exact playback.", this);
            int dspBufferFrames, dspBuffers;
            AudioSettings.GetDSPBufferSize(out dspBufferFrames, out dspBuffers);
            ring = new PcmRingBuffer(Mathf.CeilToInt(Mathf.Max(bufferSeconds, targetLatencySeconds * 2 + 0.1f) * outputRate), 2);
            // The node that welcomed the client: after a session_elsewhere, not the host set in the Inspector.
            receiver = new TcpAudioReceiver(target.Client.Host, welcome.AudioTcpPort, ring, outputRate, welcome.ClientId);
            playback = new PcmStreamPlayback(ring, outputRate, welcome.SampleRateHz, targetLatencySeconds, Math.Max(4096, dspBufferFrames));
            target.StreamClock = playback.ClockMap;
            receiver.Start();
            var source = GetComponent<AudioSource>();
            source.clip = null;   // no clip: this filter is the source
            source.spatialBlend = 0f;
            source.loop = true;
            if (!source.isPlaying) source.Play();
        }

        // Unity's audio thread. No allocation, no lock, no Unity API other than AudioSettings.dspTime
        // (which Unity's own dspTime example reads here).
        void OnAudioFilterRead(float[] data, int channels)
        {
            var p = playback;
            if (p == null)
            {
                Array.Clear(data, 0, data.Length);
                return;
            }
            p.Fill(data, channels, AudioSettings.dspTime);
        }

        void OnDestroy()
        {
            var target = soundtrack != null ? soundtrack : AdaptiveSoundtrack.Instance;
            if (target != null && playback != null && target.StreamClock == playback.ClockMap) target.StreamClock = null;
            playback = null;
            if (receiver != null) receiver.Dispose();
        }
    }
}
