// Sample: call Play() from a UI Button's OnClick (or any UnityEvent) to fire a stinger.
using UnityEngine;

namespace Adaptive.Soundtrack.Samples
{
    public class StingerButton : MonoBehaviour
    {
        // The names the game may trigger with the server's embedded mapping (`./run adaptive bank` lists a bank's;
        // the mapping adds its own, such as objective); tests/clients/test_unity_console.py keeps this list whole.
        [Tooltip("A stinger name: with the default bank and mapping, discovery, danger, impact, victory, loss, " +
                 "flourish or objective (the victory phrase, held for the next bar line)")]
        public string stinger = "discovery";

        public void Play()
        {
            var soundtrack = AdaptiveSoundtrack.Instance;
            if (soundtrack != null) soundtrack.TriggerStinger(stinger);
            else Debug.LogWarning("StingerButton: no AdaptiveSoundtrack in the scene", this);
        }
    }
}
