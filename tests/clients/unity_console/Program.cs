// A console program that runs the engine-independent C# of the Unity package (Runtime/Core) against a real
// `adaptive serve`: hello, clock sync, a sequence of scene states (with a burst that the rate cap must thin),
// a stinger, an unknown stinger (the server must answer with an error), the TCP audio stream into the ring
// buffer, played by a simulated audio callback. Every observation is printed as one JSON object per line;
// tests/clients/test_unity_console.py checks them. Build: mcs -out:client.exe Runtime/Core/*.cs Program.cs
using System;
using System.Globalization;
using System.Text;
using System.Threading;
using Adaptive.Soundtrack;

static class Program
{
    static readonly object OutputGate = new object();
    static double firstPlayedLocal = double.NaN;

    internal static string Quote(string s)
    {
        var b = new StringBuilder("\"");
        foreach (char c in s)
        {
            if (c == '"' || c == '\\') b.Append('\\').Append(c);
            else if (c < ' ') b.AppendFormat("\\u{0:x4}", (int)c);
            else b.Append(c);
        }
        return b.Append('"').ToString();
    }

    /// <summary>Prints one JSON object from key, value pairs.</summary>
    internal static void Emit(params object[] pairs)
    {
        var b = new StringBuilder("{");
        for (int i = 0; i < pairs.Length; i += 2)
        {
            if (i > 0) b.Append(',');
            b.Append(Quote((string)pairs[i])).Append(':');
            object v = pairs[i + 1];
            if (v == null) b.Append("null");
            else if (v is string) b.Append(Quote((string)v));
            else if (v is bool) b.Append((bool)v ? "true" : "false");
            else if (v is double || v is float)
            {
                double d = Convert.ToDouble(v);
                b.Append(double.IsNaN(d) || double.IsInfinity(d) ? "null" : d.ToString("R", CultureInfo.InvariantCulture));
            }
            else b.Append(Convert.ToString(v, CultureInfo.InvariantCulture));
        }
        lock (OutputGate) Console.WriteLine(b.Append('}').ToString());
    }

    /// <summary>Says hello for <paramref name="session"/> to a node that answers session_elsewhere; prints the
    /// redirect the client followed, the welcome of the node it names, where the client talks now, and the first
    /// blocks of that node's TCP audio stream (read where the welcome says, as AdaptiveStreamPlayer does).</summary>
    static int Redirect(string host, int port, string session)
    {
        using (var client = new AdaptiveClient(host, port, "csharp-redirect", session: session))
        {
            client.Redirected += r => Emit("kind", "redirected", "session_id", r.SessionId, "host", r.Host, "osc_port", r.OscPort,
                                           "zmq_control_port", r.ZmqControlPort, "audio_tcp_port", r.AudioTcpPort,
                                           "from_host", r.FromHost, "from_osc_port", r.FromOscPort);
            client.ErrorReceived += e => Emit("kind", "error", "code", e.Code, "message", e.Message);
            int firstReplyPort = client.ReplyPort;
            double helloLocal = ClockSync.Now();
            client.Hello(48000, 2, "s16");
            double deadline = helloLocal + 20.0; // a session is made on its first hello: 0.5 to 3 s
            while (client.Welcome == null && client.RedirectFailure == null && ClockSync.Now() < deadline)
            {
                client.DispatchPending();
                Thread.Sleep(5);
            }
            double welcomeLocal = ClockSync.Now();
            client.DispatchPending();
            var welcome = client.Welcome;
            if (welcome == null)
            {
                Emit("kind", "fatal", "message", "no welcome after saying hello to udp://" + host + ":" + port);
                return 1;
            }
            Emit("kind", "welcome", "session_id", welcome.SessionId, "audio_tcp_port", welcome.AudioTcpPort,
                 "client_id", welcome.ClientId, "hello_to_welcome_ms", (welcomeLocal - helloLocal) * 1000);
            Emit("kind", "client", "host", client.Host, "port", client.Port, "session", client.Session,
                 "reply_port", client.ReplyPort, "first_reply_port", firstReplyPort);
            var ring = new PcmRingBuffer(welcome.SampleRateHz, 2);
            using (var receiver = new TcpAudioReceiver(client.Host, welcome.AudioTcpPort, ring, welcome.SampleRateHz, welcome.ClientId))
            {
                int blocks = 0;
                receiver.BlockReceived = (h, samples, count) =>
                {
                    if (Interlocked.Increment(ref blocks) <= 5)
                        Emit("kind", "audio", "sequence", (long)h.Sequence, "first_frame", (long)h.FirstFrame, "n_frames", h.Frames);
                };
                receiver.Start();
                double until = ClockSync.Now() + 5.0;
                while (Volatile.Read(ref blocks) < 5 && ClockSync.Now() < until) Thread.Sleep(10);
            }
            client.SetScene("tense", 0.6f, "arena");
            Thread.Sleep(100);
        }
        return 0;
    }

    static int Main(string[] args)
    {
        if (args.Length == 1 && args[0] == "codec") return SelfTests.Codec();
        if (args.Length == 1 && args[0] == "ring") return SelfTests.Ring();
        if (args.Length == 4 && args[0] == "redirect") return Redirect(args[1], int.Parse(args[2], CultureInfo.InvariantCulture), args[3]);
        if (args.Length < 2)
        {
            Console.Error.WriteLine("usage: client.exe HOST OSC_PORT [RUN_SECONDS]   (against a server)\n" +
                                    "       client.exe codec < hex datagrams          (codec checks)\n" +
                                    "       client.exe ring                           (ring buffer, playback, resampler checks)\n" +
                                    "       client.exe redirect HOST OSC_PORT SESSION (hello to a node that answers session_elsewhere)");
            return 2;
        }
        string host = args[0];
        int port = int.Parse(args[1], CultureInfo.InvariantCulture);
        double runSeconds = args.Length > 2 ? double.Parse(args[2], CultureInfo.InvariantCulture) : 5.0;
        const double PrefillSeconds = 0.1;
        const int CallbackFrames = 512;

        string role = args.Length > 3 ? args[3] : "";
        string secret = args.Length > 4 ? args[4] : null;
        using (var client = new AdaptiveClient(host, port, "csharp-console", maxSceneRateHz: 10, role: role, secret: secret))
        {
            double helloLocal = ClockSync.Now();
            client.Hello(48000, 2, "s16");
            var welcome = client.WaitForWelcome(5.0);
            double welcomeLocal = ClockSync.Now();
            if (welcome == null)
            {
                Emit("kind", "fatal", "message", "no welcome from udp://" + host + ":" + port + " within 5 s");
                return 1;
            }
            Emit("kind", "welcome", "protocol_version", welcome.ProtocolVersion, "session_id", welcome.SessionId,
                 "sample_rate_hz", welcome.SampleRateHz, "block_frames", welcome.BlockFrames,
                 "lookahead_ms", welcome.LookaheadMs, "audio_tcp_port", welcome.AudioTcpPort,
                 "role", welcome.Role, "client_id", welcome.ClientId, "lease_s", welcome.LeaseSeconds);
            client.Subscribe("events");

            // Audio: network thread -> ring -> simulated audio callback at the session rate.
            int rate = welcome.SampleRateHz;
            var ring = new PcmRingBuffer(rate, 2);
            var playback = new PcmStreamPlayback(ring, rate, rate, PrefillSeconds, CallbackFrames);
            var check44k = new LinearResampler(rate, 44100, 2);
            var check44kOut = new float[check44k.MaxOutputFrames(8192) * 2];
            long check44kIn = 0, check44kOutFrames = 0;
            double sumSquaresIn = 0, sumSquaresOut = 0;
            var receiver = new TcpAudioReceiver(host, welcome.AudioTcpPort, ring, rate, welcome.ClientId);
            double firstBlockLocal = double.NaN;
            firstPlayedLocal = double.NaN;
            receiver.BlockReceived = (h, samples, count) =>
            {
                if (double.IsNaN(firstBlockLocal)) firstBlockLocal = ClockSync.Now();
                double sum = 0;
                for (int i = 0; i < count; i++) sum += samples[i] * (double)samples[i];
                Emit("kind", "audio", "sequence", (long)h.Sequence, "first_frame", (long)h.FirstFrame, "n_frames", h.Frames,
                     "channels", h.Channels, "sample_format", h.SampleFormat, "sample_rate_hz", h.SampleRateHz,
                     "rms", Math.Sqrt(sum / Math.Max(1, count)));
                if (h.Frames <= 8192)
                {
                    int n = check44k.Process(samples, h.Frames, check44kOut);
                    check44kIn += h.Frames;
                    check44kOutFrames += n;
                    sumSquaresIn += sum;
                    for (int i = 0; i < n * 2; i++) sumSquaresOut += check44kOut[i] * (double)check44kOut[i];
                }
            };
            receiver.Start();

            var stop = new ManualResetEventSlim(false);
            double audioStartLocal = ClockSync.Now();
            var audioThread = new Thread(() =>
            {
                var buffer = new float[CallbackFrames * 2];
                long framesOut = 0;
                while (!stop.IsSet)
                {
                    // The simulated output device: a callback per 512 frames, its clock counted in frames like dspTime.
                    double audioClock = audioStartLocal + framesOut / (double)rate;
                    double wait = audioClock - ClockSync.Now();
                    if (wait > 0) Thread.Sleep(TimeSpan.FromSeconds(Math.Min(wait, 0.05)));
                    if (ClockSync.Now() < audioClock) continue;
                    playback.Fill(buffer, 2, audioClock);
                    if (playback.IsPlaying && double.IsNaN(Volatile.Read(ref firstPlayedLocal)))
                        Volatile.Write(ref firstPlayedLocal, audioClock); // the first callback that played the stream
                    framesOut += CallbackFrames;
                }
            }) { IsBackground = true, Name = "simulated-audio-callback" };
            audioThread.Start();

            // Clock sync while the stream prefills (as AdaptiveSoundtrack does on its own thread).
            bool synced = client.SyncClock(8);
            Emit("kind", "clock", "synced", synced, "offset_s", client.Clock.OffsetSeconds,
                 "round_trip_s", client.Clock.RoundTripSeconds, "samples", client.Clock.Samples);

            // Callbacks, dispatched on this (the "main") thread.
            int mainThread = Thread.CurrentThread.ManagedThreadId;
            Func<TimedEvent, object[]> stamp = e => new object[] {
                "frame", e.Frame, "server_time_s", e.ServerTimeSeconds,
                "arrival_server_time_s", client.Clock.LocalToServer(e.ArrivalLocalSeconds),
                "heard_local_s", playback.ClockMap.IsAnchored ? playback.ClockMap.FrameToAudioSeconds(e.Frame) : double.NaN,
                "due_local_s", client.Clock.ServerToLocal(e.ServerTimeSeconds),
                "on_main_thread", Thread.CurrentThread.ManagedThreadId == mainThread };
            Func<object[], object[], object[]> join = (a, b) => { var r = new object[a.Length + b.Length]; a.CopyTo(r, 0); b.CopyTo(r, a.Length); return r; };
            client.BeatReceived += e => Emit(join(new object[] { "kind", "beat", "cue", e.Cue, "bar_index", e.BarIndex, "beat_in_bar", e.BeatInBar, "bpm", e.Bpm }, stamp(e)));
            client.BarReceived += e => Emit(join(new object[] { "kind", "bar", "cue", e.Cue, "bar_index", e.BarIndex }, stamp(e)));
            client.CueChanged += e => Emit(join(new object[] { "kind", "cue_change", "cue", e.Cue, "previous", e.Previous }, stamp(e)));
            client.TransitionReceived += e => Emit(join(new object[] { "kind", "transition", "phase", e.Phase, "from_cue", e.FromCue, "to_cue", e.ToCue }, stamp(e)));
            client.StingerPlayed += e => Emit(join(new object[] { "kind", "stinger_played", "stinger", e.Stinger }, stamp(e)));
            client.ErrorReceived += e => Emit("kind", "error", "code", e.Code, "message", e.Message);

            // The scene script, by seconds since start.
            double start = ClockSync.Now();
            int step = 0, burstCalls = 0, burstSentAtOnce = 0;
            double angrySentLocal = double.NaN, combatHeardLocal = double.NaN;
            client.CueChanged += e =>
            {
                if (e.Cue == "combat" && playback.ClockMap.IsAnchored) combatHeardLocal = playback.ClockMap.FrameToAudioSeconds(e.Frame);
            };
            while (ClockSync.Now() - start < runSeconds)
            {
                double t = ClockSync.Now() - start;
                if (step == 0)
                {
                    client.SetScene("calm", 0.5f, "forest");
                    Emit("kind", "sent", "what", "scene", "emotion", "calm", "intensity", 0.5, "t", t);
                    step++;
                }
                else if (step == 1 && t >= 0.3)
                {
                    // A player walking through a gradient: 30 changes in a few milliseconds; the cap (10/s) holds
                    // them and Tick sends only the newest when the interval has passed.
                    for (int i = 1; i <= 30; i++, burstCalls++)
                        if (client.SetScene("calm", 0.5f + i * 0.01f, "forest")) burstSentAtOnce++;
                    Emit("kind", "sent", "what", "scene_burst", "calls", burstCalls, "sent_at_once", burstSentAtOnce,
                         "last_intensity", 0.8f, "t", t);
                    step++;
                }
                else if (step == 2 && t >= 1.5)
                {
                    client.SetScene("angry", 0.8f, "forest");
                    angrySentLocal = ClockSync.Now();
                    Emit("kind", "sent", "what", "scene", "emotion", "angry", "intensity", 0.8, "t", t);
                    step++;
                }
                else if (step == 3 && t >= 2.5)
                {
                    client.TriggerStinger("danger");
                    Emit("kind", "sent", "what", "stinger", "stinger", "danger", "t", t);
                    step++;
                }
                else if (step == 4 && t >= 3.0)
                {
                    client.TriggerStinger("no_such_stinger");
                    Emit("kind", "sent", "what", "stinger", "stinger", "no_such_stinger", "t", t);
                    step++;
                }
                client.Tick();
                client.DispatchPending();
                Thread.Sleep(5);
            }
            stop.Set();
            audioThread.Join(1000);
            receiver.Dispose();
            client.DispatchPending();
            Emit("kind", "latency", "hello_to_welcome_ms", (welcomeLocal - helloLocal) * 1000,
                 "hello_to_first_audio_block_ms", (firstBlockLocal - helloLocal) * 1000,
                 "hello_to_first_heard_ms", (Volatile.Read(ref firstPlayedLocal) - helloLocal) * 1000,
                 "scene_change_to_cue_heard_ms", (combatHeardLocal - angrySentLocal) * 1000);
            Emit("kind", "summary", "scene_messages_sent", client.SceneMessagesSent,
                 "datagrams_received", client.DatagramsReceived, "decode_errors", client.DecodeErrors,
                 "audio_blocks", receiver.Blocks, "sequence_gaps", receiver.SequenceGaps,
                 "resync_bytes", receiver.ResyncBytes, "connects", receiver.Connects, "audio_problem", receiver.LastProblem,
                 "played_frames", playback.PlayedFrames, "underruns", playback.Underruns,
                 "underrun_frames", playback.UnderrunFrames, "skipped_frames", playback.SkippedFrames,
                 "ring_dropped_samples", ring.DroppedSamples, "prefill_frames", playback.PrefillFrames,
                 "resample_in_frames", check44kIn, "resample_out_frames", check44kOutFrames,
                 "resample_rms_in", Math.Sqrt(sumSquaresIn / Math.Max(1, check44kIn * 2)),
                 "resample_rms_out", Math.Sqrt(sumSquaresOut / Math.Max(1, check44kOutFrames * 2)));
        }
        return 0;
    }
}
