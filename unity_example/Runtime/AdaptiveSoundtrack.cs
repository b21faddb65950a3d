// The scene-facing component: connects to an adaptive server, sends scene state (from EmotionZones or your
// scripts), triggers stingers, and raises beat/bar/cue/stinger UnityEvents on the main thread, at the
// moment the music plays them on AudioSettings.dspTime (or at once, see dispatchTiming).
using System;
using System.Collections.Generic;
using System.Threading;
using UnityEngine;
using UnityEngine.Events;

namespace Adaptive.Soundtrack
{
    [Serializable] public class BeatUnityEvent : UnityEvent<int, int> { }       // bar index (from 0), beat in bar (from 1)
    [Serializable] public class BarUnityEvent : UnityEvent<int> { }             // bar index (from 0)
    [Serializable] public class CueChangeUnityEvent : UnityEvent<string, string> { } // cue, previous cue
    [Serializable] public class StingerUnityEvent : UnityEvent<string> { }      // stinger name

    /// <summary>When the beat/bar/cue/stinger UnityEvents fire.</summary>
    public enum DispatchTiming
    {
        /// <summary>In the first Update at or after the event's dspTime (when it is heard): animate on the beat.</summary>
        WhenHeard,
        /// <summary>In the first Update after the message arrived (ahead of time by the server's lookahead plus
        /// the stream's latency): schedule sounds with AudioSource.PlayScheduled(info.DspTime).</summary>
        OnArrival,
    }

    /// <summary>
    /// One per scene (<see cref="Instance"/>). Owns the <see cref="AdaptiveClient"/>; its receive thread only
    /// queues messages, and Update dispatches them here on the main thread.
    /// </summary>
    [DisallowMultipleComponent]
    [AddComponentMenu("Adaptive Soundtrack/Adaptive Soundtrack")]
    public class AdaptiveSoundtrack : MonoBehaviour
    {
        [Header("Server")]
        [Tooltip("Host running `adaptive serve` (loopback by default), or any node of an `adaptive cluster`: its session_elsewhere is followed to the hosting node (Client.Host)")] public string host = "127.0.0.1";
        [Tooltip("The server's OSC UDP port (adaptive serve --osc-port, default 9000)")] public int oscPort = 9000;
        public string clientName = "unity";
        [Tooltip("Role to ask for on a server with credentials (control, listener, audience); empty without credentials. See docs/network.md")]
        public string role = "";
        [Tooltip("That role's secret (the server's secrets.toml); empty without credentials. Keep it out of version control.")]
        public string secret = "";
        [Tooltip("Session to join: empty for the server's default session, \"new\" for a new one, or a session id (made if there is none). See docs/sessions.md")]
        public string session = "";
        [Tooltip("At most this many scene messages per second; changes in between are merged")] public float maxSceneRateHz = 20f;
        [Tooltip("Pings for clock sync at start and every resyncSeconds")] public int clockSyncPings = 8;
        public float resyncSeconds = 10f;

        [Header("Scene state outside every EmotionZone")]
        public string defaultEmotion = "calm";
        [Range(0f, 1f)] public float defaultIntensity = 0.3f;
        public string defaultLocation = "";

        [Header("Callbacks (main thread)")]
        public DispatchTiming dispatchTiming = DispatchTiming.WhenHeard;
        [Tooltip("Added to every event's dspTime when no AdaptiveStreamPlayer plays the stream (seconds)")]
        public float outputLatencySeconds = 0f;
        public BeatUnityEvent onBeat = new BeatUnityEvent();
        public BarUnityEvent onBar = new BarUnityEvent();
        public CueChangeUnityEvent onCueChange = new CueChangeUnityEvent();
        public StingerUnityEvent onStinger = new StingerUnityEvent();

        /// <summary>Full event data, raised with the UnityEvents; <see cref="TimedEvent"/>s carry their dspTime
        /// in <see cref="DspTimeOf"/>.</summary>
        public event Action<BeatInfo> Beat;
        public event Action<BarInfo> Bar;
        public event Action<CueChangeInfo> CueChange;
        public event Action<TransitionInfo> Transition;
        public event Action<StingerInfo> Stinger;
        public event Action<ServerError> ServerErrorReceived;
        /// <summary>Raised when the client followed a session_elsewhere (a cluster's node sent it to the node that
        /// hosts its session, docs/cluster.md); the welcome comes from that node next.</summary>
        public event Action<SessionElsewhereInfo> Redirected;
        /// <summary>Raised as soon as a beat arrives (ahead of time), with the dspTime it will be heard at:
        /// the hook for AudioSource.PlayScheduled, whatever <see cref="dispatchTiming"/> says.</summary>
        public event Action<BeatInfo, double> BeatAhead;

        public static AdaptiveSoundtrack Instance { get; private set; }
        public AdaptiveClient Client { get; private set; }
        public WelcomeInfo Welcome { get { return Client == null ? null : Client.Welcome; } }
        /// <summary>The cue playing (from the last cue change or beat), "" before the first.</summary>
        public string CurrentCue { get; private set; }

        /// <summary>Set by <see cref="AdaptiveStreamPlayer"/>: server frames to the dspTime they are heard at.</summary>
        public AudioClockMap StreamClock { get; set; }

        readonly ZoneStack<EmotionZone> zones = new ZoneStack<EmotionZone>(zone => zone.priority);
        readonly List<KeyValuePair<double, Action>> due = new List<KeyValuePair<double, Action>>();
        readonly double[] dspMinusLocal = new double[64];
        int dspSamples;
        int outputSampleRateHz = 48000;
        Thread syncThread;
        volatile bool running;

        void Awake()
        {
            if (Instance != null && Instance != this)
            {
                Debug.LogWarning("AdaptiveSoundtrack: more than one in the scene; using the first (" + Instance.name + ")", this);
                enabled = false;
                return;
            }
            Instance = this;
            CurrentCue = "";
        }

        void Start()
        {
            try
            {
                Client = new AdaptiveClient(host, oscPort, clientName, maxSceneRateHz, role, secret, session);
            }
            catch (Exception error)
            {
                Debug.LogError("AdaptiveSoundtrack: cannot open a UDP socket to " + host + ":" + oscPort + ": " + error.Message, this);
                enabled = false;
                return;
            }
            Client.WelcomeReceived += w =>
            {
                Client.Subscribe("events"); // the client exists now (a hello may need the cookie round trip first)
                Debug.Log("AdaptiveSoundtrack: joined session '" + w.SessionId + "' on udp://" + Client.Host + ":" + Client.Port +
                          " at " + w.SampleRateHz + " Hz, audio on tcp port " + w.AudioTcpPort, this);
                Client.ResendScene(); // a state sent before the server was up was lost
            };
            Client.BeatReceived += OnBeat;
            Client.BarReceived += e => Schedule(e, () => { if (Bar != null) Bar(e); onBar.Invoke(e.BarIndex); });
            Client.CueChanged += e => Schedule(e, () => { CurrentCue = e.Cue; if (CueChange != null) CueChange(e); onCueChange.Invoke(e.Cue, e.Previous); });
            Client.TransitionReceived += e => Schedule(e, () => { if (Transition != null) Transition(e); });
            Client.StingerPlayed += e => Schedule(e, () => { if (Stinger != null) Stinger(e); onStinger.Invoke(e.Stinger); });
            Client.Redirected += r =>
            {
                Debug.Log("AdaptiveSoundtrack: session '" + r.SessionId + "' is hosted by udp://" + r.Host + ":" + r.OscPort +
                          " (udp://" + r.FromHost + ":" + r.FromOscPort + " said so, session_elsewhere); saying hello there", this);
                if (Redirected != null) Redirected(r);
            };
            Client.ErrorReceived += e =>
            {
                if (e.Code.StartsWith("client_", StringComparison.Ordinal)) // found by this client, not sent by the server
                    Debug.LogError("AdaptiveSoundtrack: " + e.Code + ": " + e.Message, this);
                else
                    Debug.LogWarning("AdaptiveSoundtrack: the server said " + e.Code + ": " + e.Message, this);
                if (ServerErrorReceived != null) ServerErrorReceived(e);
            };
            outputSampleRateHz = AudioSettings.outputSampleRate; // main thread only: read it here
            Client.Hello(outputSampleRateHz, 2, "s16");
            Client.Subscribe("events");
            PushScene();
            running = true;
            syncThread = new Thread(SyncLoop) { IsBackground = true, Name = "adaptive-clock-sync" };
            syncThread.Start();
        }

        void SyncLoop()
        {
            while (running)
            {
                if (Client.Welcome == null)
                {
                    // No welcome yet: the server is not up, or the datagram was lost. Say hello again each second
                    // (to the node a session_elsewhere named, if one was followed), unless the redirects looped:
                    // the cluster would answer the same; the error was logged.
                    for (int i = 0; i < 10 && running && Client.Welcome == null; i++) Thread.Sleep(100);
                    if (Client.Welcome == null && running && Client.RedirectFailure == null)
                    {
                        Client.Hello(outputSampleRateHz, 2, "s16");
                        Client.Subscribe("events");
                    }
                    continue;
                }
                Client.SyncClock(clockSyncPings);
                // The pings renew the lease too: resync at least three times per lease.
                var welcome = Client.Welcome;
                double every = welcome != null && welcome.LeaseSeconds > 0 ? Math.Min(resyncSeconds, welcome.LeaseSeconds / 3.0) : resyncSeconds;
                for (int i = 0; i < every * 10 && running; i++) Thread.Sleep(100);
            }
        }

        void OnBeat(BeatInfo e)
        {
            if (BeatAhead != null) BeatAhead(e, DspTimeOf(e));
            Schedule(e, () =>
            {
                CurrentCue = e.Cue;
                if (Beat != null) Beat(e);
                onBeat.Invoke(e.BarIndex, e.BeatInBar);
            });
        }

        void Update()
        {
            if (Client == null) return;
            double now = AudioSettings.dspTime;
            // dspTime advances a DSP buffer at a time; its offset to the Stopwatch clock is largest right after
            // an update, so the max over recent samples is the best estimate.
            dspMinusLocal[dspSamples++ % dspMinusLocal.Length] = now - ClockSync.Now();
            Client.Tick();
            Client.DispatchPending(256);
            for (int i = 0; i < due.Count; )
            {
                if (dispatchTiming == DispatchTiming.OnArrival || due[i].Key <= now)
                {
                    var action = due[i].Value;
                    due.RemoveAt(i);
                    action();
                }
                else i++;
            }
        }

        void Schedule(TimedEvent e, Action action) { due.Add(new KeyValuePair<double, Action>(DspTimeOf(e), action)); }

        /// <summary>The AudioSettings.dspTime at which an event is heard: through the stream player's map when it
        /// plays the stream, else through the ping clock sync (plus <see cref="outputLatencySeconds"/>).</summary>
        public double DspTimeOf(TimedEvent e)
        {
            var stream = StreamClock;
            if (stream != null && stream.IsAnchored) return stream.FrameToAudioSeconds(e.Frame);
            double best = double.NegativeInfinity;
            int n = Math.Min(dspSamples, dspMinusLocal.Length);
            for (int i = 0; i < n; i++) best = Math.Max(best, dspMinusLocal[i]);
            if (n == 0) best = AudioSettings.dspTime - ClockSync.Now();
            return Client.Clock.ServerToLocal(e.ServerTimeSeconds) + best + outputLatencySeconds;
        }

        // ------------------------------------------------------------------ scene state
        /// <summary>Sets the scene state outside every zone (and sends it if no zone is active).</summary>
        public void SetDefaultScene(string emotion, float intensity, string location)
        {
            defaultEmotion = emotion; defaultIntensity = intensity; defaultLocation = location;
            PushScene();
        }

        /// <summary>Sets the intensity of the active state (the top zone's, or the default one).</summary>
        public void SetIntensity(float intensity)
        {
            var top = TopZone();
            if (top != null) top.intensity = intensity; else defaultIntensity = intensity;
            PushScene();
        }

        /// <summary>Plays a stinger at its quantized boundary (names: `adaptive bank`).</summary>
        public void TriggerStinger(string stinger)
        {
            if (Client != null) Client.TriggerStinger(stinger);
        }

        /// <summary>Votes as the audience (role "audience" on a server with credentials) for a named emotion
        /// and, optionally, an intensity 0..1 (-1: no opinion); at most 10 votes a second count
        /// (docs/audience.md). Throws ArgumentException for an empty name or an intensity out of range.</summary>
        public void Vote(string emotion, float intensity = -1f)
        {
            if (Client != null) Client.Vote(emotion, intensity);
        }

        /// <summary>Votes as the audience for a valence/arousal point (each -1..1) and, optionally, an intensity.</summary>
        public void Vote(float valence, float arousal, float intensity = -1f)
        {
            if (Client != null) Client.Vote(valence, arousal, intensity);
        }

        internal void EnterZone(EmotionZone zone)
        {
            zones.Enter(zone);
            PushScene();
        }

        internal void ExitZone(EmotionZone zone)
        {
            if (zones.Exit(zone)) PushScene();
        }

        /// <summary>The zone whose state plays: the highest priority, the latest entered among equals.</summary>
        EmotionZone TopZone() { return zones.Top; }

        /// <summary>Sends the active state (rate-capped by the client; unchanged states are not resent).</summary>
        public void PushScene()
        {
            if (Client == null) return;
            var top = TopZone();
            if (top != null) Client.SetScene(top.emotion, top.intensity, string.IsNullOrEmpty(top.location) ? defaultLocation : top.location);
            else Client.SetScene(defaultEmotion, defaultIntensity, defaultLocation);
        }

        void OnDestroy()
        {
            running = false;
            if (Client != null) Client.Dispose();
            if (syncThread != null) syncThread.Join(500);
            if (Instance == this) Instance = null;
        }
    }
}
