// A trigger volume that sets emotion, intensity and location while the player is inside.
using UnityEngine;

namespace Adaptive.Soundtrack
{
    /// <summary>
    /// Put it on a GameObject with a trigger Collider (or Collider2D). While a collider tagged
    /// <see cref="playerTag"/> is inside, the scene state is this zone's; nested zones: the highest
    /// <see cref="priority"/> wins (the latest entered among equals); on leaving the last zone the
    /// soundtrack's default state returns. Needs a Rigidbody on the player or the zone (Unity's rule for
    /// trigger messages).
    /// </summary>
    [AddComponentMenu("Adaptive Soundtrack/Emotion Zone")]
    public class EmotionZone : MonoBehaviour
    {
        [Tooltip("A named emotion of the server's mapping: calm, tense, angry, happy, sad, ... (adaptive bank lists the cues)")]
        public string emotion = "tense";
        [Range(0f, 1f)] public float intensity = 0.6f;
        [Tooltip("Location sent with the state; empty keeps the soundtrack's default location")]
        public string location = "";
        public string playerTag = "Player";
        public int priority = 0;
        [Tooltip("Empty: AdaptiveSoundtrack.Instance")] public AdaptiveSoundtrack soundtrack;

        int collidersInside; // a player with several colliders enters several times

        AdaptiveSoundtrack Soundtrack { get { return soundtrack != null ? soundtrack : AdaptiveSoundtrack.Instance; } }

        void Reset()
        {
            var collider3d = GetComponent<Collider>();
            if (collider3d != null) collider3d.isTrigger = true;
            var collider2d = GetComponent<Collider2D>();
            if (collider2d != null) collider2d.isTrigger = true;
        }

        void Enter(Component other)
        {
            if (!other.CompareTag(playerTag) || collidersInside++ > 0) return;
            var target = Soundtrack;
            if (target != null) target.EnterZone(this);
            else Debug.LogWarning("EmotionZone " + name + ": no AdaptiveSoundtrack in the scene", this);
        }

        void Exit(Component other)
        {
            if (!other.CompareTag(playerTag) || collidersInside == 0 || --collidersInside > 0) return;
            var target = Soundtrack;
            if (target != null) target.ExitZone(this);
        }

        void OnTriggerEnter(Collider other) { Enter(other); }
        void OnTriggerExit(Collider other) { Exit(other); }
        void OnTriggerEnter2D(Collider2D other) { Enter(other); }
        void OnTriggerExit2D(Collider2D other) { Exit(other); }

        void OnDisable()
        {
            collidersInside = 0;
            var target = Soundtrack;
            if (target != null) target.ExitZone(this);
        }

        /// <summary>Changes this zone's intensity (e.g. as enemies close in); resent if the zone is active.</summary>
        public void SetIntensity(float value)
        {
            intensity = Mathf.Clamp01(value);
            var target = Soundtrack;
            if (target != null && collidersInside > 0) target.PushScene();
        }
    }
}
