// The audio-callback half of the stream player, engine-independent: Unity's OnAudioFilterRead calls Fill.
// No allocation, no lock, no blocking: it only copies from the SPSC ring into the engine's buffer.
using System;
using System.Threading;

namespace Adaptive.Soundtrack
{
    /// <summary>
    /// Plays a <see cref="PcmRingBuffer"/> into an engine's audio buffer. It waits until
    /// <see cref="PrefillFrames"/> are buffered (the target latency), then plays; on underrun it writes zeros,
    /// counts the underrun and prefills again. If the buffer grows past <see cref="MaxBufferedFrames"/>
    /// (the output clock runs slower than the server's), it skips back to the target and counts the skip.
    /// </summary>
    public sealed class PcmStreamPlayback
    {
        readonly PcmRingBuffer ring;
        readonly float[] scratch;
        readonly int scratchFrames;
        volatile bool playing;
        long underruns, underrunFrames, skippedFrames, playedFrames;

        public readonly int PrefillFrames;
        public readonly int MaxBufferedFrames;
        /// <summary>Rate of the ring (the engine's output rate) and of the session, Hz.</summary>
        public readonly int OutputRateHz, SessionRateHz;
        /// <summary>Where each callback's first output sample sits on the session clock, by audio-clock time.</summary>
        public readonly AudioClockMap ClockMap = new AudioClockMap();

        /// <param name="targetLatencySeconds">buffered audio before playing starts (e.g. 0.05).</param>
        /// <param name="maxCallbackFrames">largest engine buffer expected, frames (bigger ones are processed in pieces).</param>
        public PcmStreamPlayback(PcmRingBuffer ring, int outputRateHz, int sessionRateHz, double targetLatencySeconds,
                                 int maxCallbackFrames = 4096)
        {
            this.ring = ring;
            OutputRateHz = outputRateHz;
            SessionRateHz = sessionRateHz;
            PrefillFrames = Math.Max(1, (int)Math.Round(targetLatencySeconds * outputRateHz));
            MaxBufferedFrames = Math.Min(ring.CapacitySamples / ring.Channels, PrefillFrames * 2 + maxCallbackFrames);
            if (PrefillFrames >= ring.CapacitySamples / ring.Channels)
                throw new ArgumentException("the ring (" + ring.CapacitySamples / ring.Channels + " frames) must hold more than the prefill (" + PrefillFrames + " frames)");
            scratchFrames = maxCallbackFrames;
            scratch = new float[maxCallbackFrames * ring.Channels];
        }

        public bool IsPlaying { get { return playing; } }
        /// <summary>Callbacks that ran out of samples.</summary>
        public long Underruns { get { return Interlocked.Read(ref underruns); } }
        /// <summary>Output frames written as zeros because of underruns (prefill waits included).</summary>
        public long UnderrunFrames { get { return Interlocked.Read(ref underrunFrames); } }
        public long SkippedFrames { get { return Interlocked.Read(ref skippedFrames); } }
        /// <summary>Output frames written from the stream.</summary>
        public long PlayedFrames { get { return Interlocked.Read(ref playedFrames); } }

        /// <summary>Audio thread: fills <paramref name="data"/> (interleaved, <paramref name="outputChannels"/> per frame)
        /// whose first frame is heard at <paramref name="audioClockSeconds"/> (Unity: AudioSettings.dspTime).</summary>
        public void Fill(float[] data, int outputChannels, double audioClockSeconds)
        {
            int frames = data.Length / outputChannels;
            int available = ring.AvailableFrames;
            if (!playing)
            {
                if (available < PrefillFrames)
                {
                    Array.Clear(data, 0, data.Length);
                    Interlocked.Add(ref underrunFrames, frames);
                    return;
                }
                playing = true;
            }
            if (available > MaxBufferedFrames)
                Interlocked.Add(ref skippedFrames, Skip(available - PrefillFrames));
            double ratio = SessionRateHz / (double)OutputRateHz;
            double frame = ring.NextServerFrame(ratio);
            if (frame >= 0) ClockMap.Anchor(audioClockSeconds, frame, SessionRateHz);

            int done = 0, ringChannels = ring.Channels;
            while (done < frames)
            {
                int want = Math.Min(frames - done, scratchFrames);
                int got = ring.Read(scratch, 0, want * ringChannels) / ringChannels;
                MapChannels(scratch, ringChannels, got, data, done, outputChannels);
                done += got;
                Interlocked.Add(ref playedFrames, got);
                if (got < want)
                {
                    Array.Clear(data, done * outputChannels, (frames - done) * outputChannels);
                    Interlocked.Increment(ref underruns);
                    Interlocked.Add(ref underrunFrames, frames - done);
                    playing = false; // prefill again
                    return;
                }
            }
        }

        int Skip(int frames)
        {
            int skipped = 0;
            while (skipped < frames)
            {
                int n = ring.Read(scratch, 0, Math.Min(frames - skipped, scratchFrames) * ring.Channels) / ring.Channels;
                if (n == 0) break;
                skipped += n;
            }
            return skipped;
        }

        /// <summary>Copies <paramref name="frames"/> frames, mapping channels: equal counts copy; mono output takes
        /// the mean; more output channels get left/right in the first two and silence in the rest.</summary>
        static void MapChannels(float[] src, int srcChannels, int frames, float[] dst, int dstFrame, int dstChannels)
        {
            if (srcChannels == dstChannels)
            {
                Array.Copy(src, 0, dst, dstFrame * dstChannels, frames * dstChannels);
                return;
            }
            for (int f = 0; f < frames; f++)
            {
                int s = f * srcChannels, d = (dstFrame + f) * dstChannels;
                if (dstChannels == 1)
                {
                    float sum = 0;
                    for (int c = 0; c < srcChannels; c++) sum += src[s + c];
                    dst[d] = sum / srcChannels;
                }
                else
                {
                    for (int c = 0; c < dstChannels; c++)
                        dst[d + c] = srcChannels == 1 ? src[s] : c < srcChannels ? src[s + c] : 0f;
                }
            }
        }
    }
}
