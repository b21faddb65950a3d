// The OSC client of an adaptive server (docs/protocol.md): hello, scene state on change at a capped rate,
// stingers, clock sync, and callbacks read on a background thread and handed to the caller's thread.
// On a cluster (docs/cluster.md) it follows a session_elsewhere answer to the node that hosts the session,
// as the Python client (bridge/client.py) does: at most MaxRedirects in a row.
// No Unity: the AdaptiveSoundtrack MonoBehaviour wraps it, and Tests~/ConsoleClient runs it under Mono.
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Net;
using System.Net.Sockets;
using System.Security.Cryptography;
using System.Text;
using System.Threading;

namespace Adaptive.Soundtrack
{
    /// <summary>One scene state: a named emotion, an intensity 0..1 and a location (the /adaptive/scene message).</summary>
    public struct SceneState : IEquatable<SceneState>
    {
        public string Emotion;
        public float Intensity;
        public string Location;

        public SceneState(string emotion, float intensity, string location)
        {
            Emotion = emotion ?? "";
            Intensity = intensity;
            Location = location ?? "";
        }

        public bool Equals(SceneState other)
        {
            return Emotion == other.Emotion && Intensity == other.Intensity && Location == other.Location;
        }

        public override bool Equals(object obj) { return obj is SceneState && Equals((SceneState)obj); }
        public override int GetHashCode() { return (Emotion ?? "").GetHashCode() ^ Intensity.GetHashCode() ^ (Location ?? "").GetHashCode(); }
        public override string ToString() { return Emotion + " " + Intensity.ToString("0.###") + " " + Location; }
    }

    /// <summary>
    /// A UDP OSC client of one adaptive server.
    /// <para>Threads: a background receive thread decodes every datagram; pongs feed <see cref="Clock"/> at once
    /// (their arrival time matters), everything else is queued. <see cref="DispatchPending"/>, called by the
    /// owner's thread (Unity: the main thread, in Update), raises the events there. All send methods are
    /// thread-safe (a UDP send never blocks for long).</para>
    /// </summary>
    public sealed class AdaptiveClient : IDisposable
    {
        /// <summary>Longest string argument the server accepts (bridge/protocol.py MAX_STRING_CHARS).</summary>
        public const int MaxStringChars = 64;

        /// <summary>session_elsewhere answers followed in a row (until a welcome, or a new <see cref="Hello"/>);
        /// the next one is not followed and <see cref="RedirectFailure"/> says so. A cluster's directory sends a
        /// client to the hosting node at once: one. The Python client's MAX_REDIRECTS (bridge/client.py).</summary>
        public const int MaxRedirects = 3;

        readonly Func<string, int, IOscTransport> connect;
        volatile IOscTransport transport;
        volatile string host;
        volatile int port;
        volatile string session;
        readonly object redirectGate = new object();
        int redirectsInARow;
        readonly List<string> redirectChain = new List<string>();
        readonly ConcurrentQueue<object> inbox = new ConcurrentQueue<object>();
        readonly ConcurrentDictionary<int, double> pingSendTimes = new ConcurrentDictionary<int, double>();
        readonly object sceneGate = new object();
        Thread receiveThread;
        volatile bool running;
        int pingSequence;

        SceneState? sentScene;
        SceneState? pendingScene;
        double lastSceneSendSeconds = double.NegativeInfinity;

        public readonly string ClientName;
        /// <summary>The role asked for in hello: "control", "listener", "audience", or "" (control on a server
        /// without credentials). See docs/network.md.</summary>
        public readonly string Role;
        /// <summary>The session hello asks to join: "" (the server's default session), "new" (a new one: the
        /// welcome's SessionId names it) or a session id (joined, or made if there is none). See docs/sessions.md.
        /// A followed session_elsewhere replaces it with the id it names.</summary>
        public string Session { get { return session; } }
        /// <summary>The host of the node this client talks to: the one given, or the one a followed
        /// session_elsewhere named (the TCP audio stream is there too).</summary>
        public string Host { get { return host; } }
        /// <summary>That node's OSC UDP port.</summary>
        public int Port { get { return port; } }
        /// <summary>After a followed session_elsewhere: the last one (the node that sent it, and the node, ports
        /// and session id it named); null before.</summary>
        public volatile SessionElsewhereInfo RedirectedFrom;
        /// <summary>Set when a redirect was not followed because it was one more than <see cref="MaxRedirects"/>
        /// in a row (code "client_redirect_loop", the message names every node of the loop); it is also raised
        /// through <see cref="ErrorReceived"/>. Null otherwise; <see cref="Hello"/> clears it.</summary>
        public volatile ServerError RedirectFailure;
        readonly byte[] secret;
        int helloSampleRateHz = 48000, helloChannels = 2;
        string helloSampleFormat = "s16";
        /// <summary>Scene states are sent at most once per this many seconds; a change in between is held
        /// and sent by <see cref="Tick"/> when the interval has passed (only the newest one).</summary>
        public double MinSceneIntervalSeconds;
        /// <summary>Server time to local time.</summary>
        public readonly ClockSync Clock = new ClockSync();

        /// <summary>The last welcome (null before one arrived). Written by the receive thread.</summary>
        public volatile WelcomeInfo Welcome;
        int sceneMessagesSent, datagramsReceived, decodeErrors;
        public int SceneMessagesSent { get { return Volatile.Read(ref sceneMessagesSent); } }
        public int DatagramsReceived { get { return Volatile.Read(ref datagramsReceived); } }
        /// <summary>Datagrams from the server this client could not decode (each also raises ErrorReceived).</summary>
        public int DecodeErrors { get { return Volatile.Read(ref decodeErrors); } }

        public event Action<WelcomeInfo> WelcomeReceived;
        public event Action<BeatInfo> BeatReceived;
        public event Action<BarInfo> BarReceived;
        public event Action<CueChangeInfo> CueChanged;
        public event Action<TransitionInfo> TransitionReceived;
        public event Action<StingerInfo> StingerPlayed;
        public event Action<MidiInfo> MidiReceived;
        /// <summary>Raised when the client followed a session_elsewhere: it now talks to the node named there
        /// and has said hello to it (the welcome follows as usual). Errors of a redirect not followed come
        /// through <see cref="ErrorReceived"/> with codes "client_bad_redirect" and "client_redirect_loop".</summary>
        public event Action<SessionElsewhereInfo> Redirected;
        public event Action<ServerError> ErrorReceived;

        /// <param name="host">the server's host (IPv4 address or name).</param>
        /// <param name="port">the server's OSC UDP port (default 9000).</param>
        /// <param name="clientName">free text sent in hello (at most 64 characters).</param>
        /// <param name="maxSceneRateHz">at most this many scene messages per second (default 20).</param>
        /// <param name="role">the role to ask for on a server with credentials ("control", "listener",
        /// "audience"); "" on a server without them.</param>
        /// <param name="secret">that role's secret (from the server's secrets.toml); null without credentials.
        /// It never crosses the wire: hello carries an HMAC-SHA256 of it over the server's cookie.</param>
        /// <param name="session">the session to join: "" (the default one), "new", or a session id (at most 32
        /// letters, digits, _ and -). See docs/sessions.md.</param>
        /// <param name="connect">opens the datagram link to a node (host, OSC port); null: UDP
        /// (<see cref="UdpOscTransport.Connect"/>). Tests pass a fake.</param>
        /// <exception cref="ArgumentException">a bad rate, role or session, or no IPv4 address for the host.</exception>
        public AdaptiveClient(string host = "127.0.0.1", int port = 9000, string clientName = "unity", double maxSceneRateHz = 20,
                              string role = "", string secret = null, string session = "",
                              Func<string, int, IOscTransport> connect = null)
        {
            if (maxSceneRateHz <= 0) throw new ArgumentOutOfRangeException("maxSceneRateHz", "must be > 0 (messages per second)");
            if (role != "" && role != "control" && role != "listener" && role != "audience")
                throw new ArgumentException("role '" + role + "' is not allowed (allowed: control, listener, audience, or \"\")");
            ClientName = Truncate(clientName);
            Role = role ?? "";
            this.session = session ?? "";
            if (this.session.Length > 32)
                throw new ArgumentException("session '" + this.session + "' is too long (allowed: at most 32 letters, digits, _ and -)");
            this.secret = string.IsNullOrEmpty(secret) ? null : Encoding.UTF8.GetBytes(secret);
            MinSceneIntervalSeconds = 1.0 / maxSceneRateHz;
            this.connect = connect ?? UdpOscTransport.Connect;
            transport = this.connect(host, port);
            this.host = host;
            this.port = port;
        }

        /// <summary>The local UDP port replies and callbacks arrive at (sent in hello). A followed
        /// session_elsewhere opens a new link, so it changes then.</summary>
        public int ReplyPort { get { return transport.LocalPort; } }

        /// <summary>Starts the receive thread (idempotent).</summary>
        public void Start()
        {
            if (running) return;
            running = true;
            receiveThread = new Thread(ReceiveLoop) { IsBackground = true, Name = "adaptive-osc-receive" };
            receiveThread.Start();
        }

        // ------------------------------------------------------------------ sending
        void Send(string address, params object[] args)
        {
            byte[] datagram = OscCodec.Encode(address, args);
            var link = transport;
            try { link.Send(datagram); }
            catch (ObjectDisposedException)
            {
                if (link == transport) throw; // closed by Dispose
                transport.Send(datagram);     // closed by a redirect meanwhile: to the new node
            }
        }

        static string Truncate(string s)
        {
            s = s ?? "";
            return s.Length <= MaxStringChars ? s : s.Substring(0, MaxStringChars);
        }

        /// <summary>Says hello: the server answers with welcome (see <see cref="WaitForWelcome"/>) and sends
        /// callbacks to <see cref="ReplyPort"/>. <paramref name="sampleFormat"/> is "s16" or "f32".
        /// <para>A node of a cluster may answer session_elsewhere instead (docs/cluster.md): the client then
        /// closes its link to that node, opens one to the node named there (<see cref="Host"/>, <see cref="Port"/>,
        /// <see cref="Session"/> and <see cref="ReplyPort"/> change; <see cref="Redirected"/> is raised) and says the
        /// same hello again, following at most <see cref="MaxRedirects"/> in a row from this call; one more sets
        /// <see cref="RedirectFailure"/>. A redirect with a bad argument is not followed (ErrorReceived, code
        /// "client_bad_redirect", naming the argument; nothing changes).</para></summary>
        public void Hello(int sampleRateHz = 48000, int channels = 2, string sampleFormat = "s16")
        {
            lock (redirectGate)
            {
                redirectsInARow = 0;
                RedirectFailure = null;
                redirectChain.Clear();
                redirectChain.Add("udp://" + host + ":" + port);
            }
            Start();
            helloSampleRateHz = sampleRateHz; helloChannels = channels; helloSampleFormat = sampleFormat;
            Send(Addresses.Hello, ReplyPort, sampleRateHz, channels, sampleFormat, ClientName, Role, "", "", Session);
        }

        /// <summary>A session_elsewhere (on the receive thread): check it, then move to the node it names and say
        /// the same hello there, as bridge/client.py's AdaptiveClient.hello does.</summary>
        void FollowRedirect(OscMessage m)
        {
            string problem;
            var redirect = SessionElsewhereInfo.TryFrom(m, host, port, out problem);
            if (redirect == null)
            {
                Refuse("client_bad_redirect", problem);
                return;
            }
            if (Welcome != null)
            {
                Refuse("client_bad_redirect", "a session_elsewhere arrived after the welcome of session '" + Welcome.SessionId +
                       "' (allowed: only as the answer to a hello)");
                return;
            }
            IOscTransport old;
            lock (redirectGate)
            {
                if (RedirectFailure != null) return; // the loop was already reported; a late duplicate
                if (redirectsInARow >= MaxRedirects)
                {
                    var failure = new ServerError
                    {
                        Code = "client_redirect_loop",
                        Message = "redirected more than " + MaxRedirects + " times in a row between the nodes of a cluster (" +
                                  string.Join(" -> ", redirectChain.ToArray()) + " -> udp://" + redirect.Host + ":" + redirect.OscPort +
                                  ", session '" + redirect.SessionId + "'); not followed: is the cluster's directory consistent?",
                    };
                    RedirectFailure = failure;
                    inbox.Enqueue(failure);
                    return;
                }
                IOscTransport next;
                try { next = connect(redirect.Host, redirect.OscPort); }
                catch (Exception error)
                {
                    Refuse("client_bad_redirect", "cannot open a link to udp://" + redirect.Host + ":" + redirect.OscPort +
                           " named by " + m.Address + ": " + error.Message);
                    return;
                }
                redirectsInARow++;
                redirectChain.Add("udp://" + redirect.Host + ":" + redirect.OscPort);
                old = transport;
                transport = next;
                host = redirect.Host;
                port = redirect.OscPort;
                session = redirect.SessionId;
                RedirectedFrom = redirect;
            }
            old.Dispose();
            inbox.Enqueue(redirect);
            Send(Addresses.Hello, ReplyPort, helloSampleRateHz, helloChannels, helloSampleFormat, ClientName, Role, "", "", Session);
        }

        /// <summary>A redirect not followed: nothing changed; the reason goes to ErrorReceived.</summary>
        void Refuse(string code, string problem)
        {
            inbox.Enqueue(new ServerError
            {
                Code = code,
                Message = problem + "; the redirect was not followed (still udp://" + host + ":" + port + ", session '" + Session + "')",
            });
        }

        /// <summary>The server's retry (a source not yet verified, or a role to prove): say hello again with its
        /// cookie and the proof of the role's secret. Called on the receive thread.</summary>
        void AnswerRetry(string cookie)
        {
            string proof = secret != null && Role != "" ? HelloProof(secret, cookie, Role, ReplyPort) : "";
            Send(Addresses.Hello, ReplyPort, helloSampleRateHz, helloChannels, helloSampleFormat, ClientName, Role, cookie, proof, Session);
        }

        /// <summary>A hello's proof (docs/network.md): the hex HMAC-SHA256 of the role's secret over
        /// "adaptive-hello|COOKIE|ROLE|REPLY_PORT", lower case.</summary>
        public static string HelloProof(byte[] secret, string cookie, string role, int replyPort)
        {
            using (var hmac = new HMACSHA256(secret))
            {
                byte[] digest = hmac.ComputeHash(Encoding.UTF8.GetBytes("adaptive-hello|" + cookie + "|" + role + "|" + replyPort));
                var hex = new StringBuilder(digest.Length * 2);
                foreach (byte b in digest) hex.Append(b.ToString("x2"));
                return hex.ToString();
            }
        }

        /// <summary>Leaves: the server forgets this client (its streams stop). <see cref="Dispose"/> does it too.</summary>
        public void Goodbye()
        {
            if (Welcome == null) return;
            try { Send(Addresses.Goodbye); } catch (Exception) { } // closing: nothing to do about a failed send
            Welcome = null;
        }

        /// <summary>Blocks until a welcome arrives (the receive thread stores it); null after the timeout.</summary>
        public WelcomeInfo WaitForWelcome(double timeoutSeconds)
        {
            double deadline = ClockSync.Now() + timeoutSeconds;
            while (Welcome == null && ClockSync.Now() < deadline) Thread.Sleep(5);
            return Welcome;
        }

        /// <summary>Starts receiving a stream: "events" (on by default after hello) or "midi". Send it after the
        /// welcome: before it the server does not know the client yet.</summary>
        public void Subscribe(string stream) { Send(Addresses.Subscribe, stream); }
        public void Unsubscribe(string stream) { Send(Addresses.Unsubscribe, stream); }

        /// <summary>Sets the scene state. Sent at once if it differs from the last one sent and the rate cap
        /// allows; otherwise held and sent by <see cref="Tick"/>. Returns true if a message was sent now.</summary>
        public bool SetScene(string emotion, float intensity, string location)
        {
            if (float.IsNaN(intensity)) throw new ArgumentException("intensity is NaN (allowed: 0..1)");
            var state = new SceneState(Truncate(emotion), Math.Max(0f, Math.Min(1f, intensity)), Truncate(location));
            lock (sceneGate)
            {
                if (sentScene.HasValue && sentScene.Value.Equals(state)) { pendingScene = null; return false; }
                pendingScene = state;
            }
            return Tick();
        }

        /// <summary>Sends the last scene state again (rate cap permitting), e.g. after a welcome: a state sent
        /// before the server was up was lost. Returns true if a message was sent now.</summary>
        public bool ResendScene()
        {
            lock (sceneGate)
            {
                if (!pendingScene.HasValue && sentScene.HasValue) pendingScene = sentScene;
                sentScene = null;
            }
            return Tick();
        }

        /// <summary>The scene state the server was last sent (null before the first).</summary>
        public SceneState? LastSentScene { get { lock (sceneGate) return sentScene; } }

        /// <summary>Sends a held scene state if the rate cap now allows. Call it every frame.
        /// Returns true if a message was sent.</summary>
        public bool Tick()
        {
            SceneState state;
            lock (sceneGate)
            {
                if (!pendingScene.HasValue) return false;
                double now = ClockSync.Now();
                if (now - lastSceneSendSeconds < MinSceneIntervalSeconds) return false;
                state = pendingScene.Value;
                pendingScene = null;
                sentScene = state;
                lastSceneSendSeconds = now;
                Send(Addresses.Scene, state.Emotion, state.Intensity, state.Location);
            }
            Interlocked.Increment(ref sceneMessagesSent);
            return true;
        }

        /// <summary>Sets the emotion as a valence/arousal point, each -1..1 (sent at once).</summary>
        public void SetEmotionPoint(float valence, float arousal)
        {
            Send(Addresses.EmotionPoint, Math.Max(-1f, Math.Min(1f, valence)), Math.Max(-1f, Math.Min(1f, arousal)));
        }

        /// <summary>Forces a cue ("" hands the choice back to the mapping).</summary>
        public void ForceCue(string cue) { Send(Addresses.Cue, Truncate(cue)); }

        /// <summary>Plays a stinger at its quantized boundary (sent at once, never rate-capped).</summary>
        public void TriggerStinger(string stinger) { Send(Addresses.Stinger, Truncate(stinger)); }

        /// <summary>Votes as the audience for a named emotion of the mapping (calm, tense, ...) and,
        /// optionally, an intensity 0..1 (-1: no opinion): /adaptive/audience/vote, as the Python client's
        /// vote(). Any role may vote; the server counts at most 10 votes a second per client (more are
        /// answered with a rate_limited error) and only the latest within the mapping's window
        /// (docs/audience.md).</summary>
        /// <exception cref="ArgumentException">An empty emotion, or an intensity outside 0..1 other than -1.</exception>
        public void Vote(string emotion, float intensity = -1f)
        {
            if (string.IsNullOrEmpty(emotion))
                throw new ArgumentException("Vote needs an emotion name (or use Vote(valence, arousal) for a point)", "emotion");
            Send(Addresses.AudienceVote, Truncate(emotion), 0f, 0f, CheckedVoteIntensity(intensity));
        }

        /// <summary>Votes as the audience for a valence/arousal point (each -1..1, clamped) and, optionally,
        /// an intensity 0..1 (-1: no opinion); see <see cref="Vote(string, float)"/>.</summary>
        /// <exception cref="ArgumentException">An intensity outside 0..1 other than -1.</exception>
        public void Vote(float valence, float arousal, float intensity = -1f)
        {
            Send(Addresses.AudienceVote, "", Math.Max(-1f, Math.Min(1f, valence)), Math.Max(-1f, Math.Min(1f, arousal)),
                 CheckedVoteIntensity(intensity));
        }

        static float CheckedVoteIntensity(float intensity)
        {
            if (intensity == -1f || (intensity >= 0f && intensity <= 1f)) return intensity;
            throw new ArgumentException("a vote's intensity is 0..1, or -1 for no opinion (got " + intensity + ")", "intensity");
        }

        /// <summary>Sends one ping; its pong updates <see cref="Clock"/> on the receive thread.</summary>
        public void Ping()
        {
            int sequence = Interlocked.Increment(ref pingSequence) & int.MaxValue;
            pingSendTimes[sequence] = ClockSync.Now();
            Send(Addresses.Ping, sequence);
        }

        /// <summary>NTP-style sync: <paramref name="pings"/> pings, one every <paramref name="intervalSeconds"/>;
        /// blocks (call it from a background thread in a game). Returns true if at least one pong came back.</summary>
        public bool SyncClock(int pings = 8, double intervalSeconds = 0.02, double timeoutSeconds = 0.5)
        {
            int before = Clock.Samples;
            for (int i = 0; i < pings; i++)
            {
                Ping();
                Thread.Sleep(TimeSpan.FromSeconds(intervalSeconds));
            }
            double deadline = ClockSync.Now() + timeoutSeconds;
            while (Clock.Samples < before + pings && ClockSync.Now() < deadline) Thread.Sleep(2);
            return Clock.Samples > before;
        }

        // ------------------------------------------------------------------ receiving
        void ReceiveLoop()
        {
            while (running)
            {
                var link = transport;
                byte[] datagram;
                try { datagram = link.Receive(); }
                catch (ObjectDisposedException)
                {
                    if (running && link != transport) continue; // a redirect swapped the link
                    return;
                }
                if (datagram == null) continue; // nothing within the wait
                double arrival = ClockSync.Now();
                Interlocked.Increment(ref datagramsReceived);
                try { Handle(OscCodec.Decode(datagram, datagram.Length), arrival); }
                catch (OscFormatException error)
                {
                    Interlocked.Increment(ref decodeErrors);
                    inbox.Enqueue(new ServerError { Code = "client_decode", Message = "undecodable datagram from the server: " + error.Message });
                }
            }
        }

        void Handle(OscMessage m, double arrival)
        {
            object item;
            switch (m.Address)
            {
                case Addresses.Pong:
                    double t0;
                    if (pingSendTimes.TryRemove(m.GetInt(0), out t0))
                        Clock.AddSample(t0, ServerTime.Seconds(m, 1), ServerTime.Seconds(m, 3), arrival);
                    return;
                case Addresses.Welcome:
                    var welcome = WelcomeInfo.From(m);
                    lock (redirectGate) redirectsInARow = 0; // "in a row": a welcome ends the run
                    Welcome = welcome;
                    item = welcome;
                    break;
                case Addresses.Beat: item = BeatInfo.From(m); break;
                case Addresses.Bar: item = BarInfo.From(m); break;
                case Addresses.CueChange: item = CueChangeInfo.From(m); break;
                case Addresses.Transition: item = TransitionInfo.From(m); break;
                case Addresses.StingerPlayed: item = StingerInfo.From(m); break;
                case Addresses.Midi: item = MidiInfo.From(m); break;
                case Addresses.Error: item = ServerError.From(m); break;
                case Addresses.Retry: AnswerRetry(m.GetString(0)); return;
                case Addresses.SessionElsewhere: FollowRedirect(m); return;
                default: throw new OscFormatException("unknown address " + m.Address + " from the server");
            }
            var timed = item as TimedEvent;
            if (timed != null) timed.ArrivalLocalSeconds = arrival;
            inbox.Enqueue(item);
        }

        /// <summary>Raises the events of the messages received so far, on the calling thread, oldest first;
        /// at most <paramref name="maxMessages"/>. Returns how many were dispatched.</summary>
        public int DispatchPending(int maxMessages = int.MaxValue)
        {
            int count = 0;
            object item;
            while (count < maxMessages && inbox.TryDequeue(out item))
            {
                count++;
                if (item is BeatInfo) Raise(BeatReceived, (BeatInfo)item);
                else if (item is BarInfo) Raise(BarReceived, (BarInfo)item);
                else if (item is CueChangeInfo) Raise(CueChanged, (CueChangeInfo)item);
                else if (item is TransitionInfo) Raise(TransitionReceived, (TransitionInfo)item);
                else if (item is StingerInfo) Raise(StingerPlayed, (StingerInfo)item);
                else if (item is MidiInfo) Raise(MidiReceived, (MidiInfo)item);
                else if (item is ServerError) Raise(ErrorReceived, (ServerError)item);
                else if (item is WelcomeInfo) Raise(WelcomeReceived, (WelcomeInfo)item);
                else if (item is SessionElsewhereInfo) Raise(Redirected, (SessionElsewhereInfo)item);
            }
            return count;
        }

        static void Raise<T>(Action<T> handler, T value) { if (handler != null) handler(value); }

        public void Dispose()
        {
            Goodbye();
            running = false;
            transport.Dispose();
            if (receiveThread != null) receiveThread.Join(1000);
        }
    }
}
