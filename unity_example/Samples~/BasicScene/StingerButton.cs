// Sample: call Play() from a UI Button's OnClick (or any UnityEvent) to fire a stinger.
using UnityEngine;

namespace Adaptive.Soundtrack.Samples
{
    public class StingerButton : MonoBehaviour
    {
        [Tooltip("A stinger of the cue bank: discovery, danger, impact, victory, loss in the default bank")]
        public string stinger = "discovery";

        public void Play()
        {
            var soundtrack = AdaptiveSoundtrack.Instance;
            if (soundtrack != null) soundtrack.TriggerStinger(stinger);
            else Debug.LogWarning("StingerButton: no AdaptiveSoundtrack in the scene", this);
        }
    }
}
