// Sample: plays a click sample exactly on every beat with AudioSource.PlayScheduled, using the dspTime the
// soundtrack computed for the beat when its message arrived (ahead of time). Shows the dspTime clock sync.
using UnityEngine;

namespace Adaptive.Soundtrack.Samples
{
    [RequireComponent(typeof(AudioSource))]
    public class MetronomeClick : MonoBehaviour
    {
        public AudioClip click;
        public AudioClip downbeatClick;
        AudioSource[] voices;
        int next;

        void Start()
        {
            // Two voices, so a click still ringing is not cut by the next one scheduled.
            voices = new[] { GetComponent<AudioSource>(), gameObject.AddComponent<AudioSource>() };
            var soundtrack = AdaptiveSoundtrack.Instance;
            if (soundtrack != null) soundtrack.BeatAhead += OnBeatAhead;
        }

        void OnBeatAhead(BeatInfo beat, double dspTime)
        {
            if (dspTime <= AudioSettings.dspTime) return; // arrived too late to schedule
            var voice = voices[next++ % voices.Length];
            voice.clip = beat.BeatInBar == 1 && downbeatClick != null ? downbeatClick : click;
            voice.PlayScheduled(dspTime);
        }

        void OnDestroy()
        {
            var soundtrack = AdaptiveSoundtrack.Instance;
            if (soundtrack != null) soundtrack.BeatAhead -= OnBeatAhead;
        }
    }
}
