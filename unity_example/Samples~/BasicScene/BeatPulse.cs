// Sample: scales its transform up on every beat (more on the downbeat) and eases back, in time with the music.
using UnityEngine;

namespace Adaptive.Soundtrack.Samples
{
    public class BeatPulse : MonoBehaviour
    {
        public float beatScale = 1.1f;
        public float downbeatScale = 1.25f;
        [Tooltip("How fast the scale returns to 1, per second")] public float recoverPerSecond = 6f;
        float scale = 1f;
        Vector3 baseScale;

        void Start()
        {
            baseScale = transform.localScale;
            var soundtrack = AdaptiveSoundtrack.Instance;
            if (soundtrack != null) soundtrack.onBeat.AddListener(OnBeat);
        }

        void OnBeat(int barIndex, int beatInBar) { scale = beatInBar == 1 ? downbeatScale : beatScale; }

        void Update()
        {
            scale = Mathf.Lerp(scale, 1f, Mathf.Clamp01(recoverPerSecond * Time.deltaTime));
            transform.localScale = baseScale * scale;
        }
    }
}
