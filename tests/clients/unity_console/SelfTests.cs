// Checks of the Core classes that need no server, run by tests/clients/test_unity_console.py:
//   client.exe codec   < hex datagrams (one per line, encoded by the Python server's encoder)
//   client.exe ring
// Each prints JSON lines; the Python test asserts on them.
using System;
using System.Collections.Generic;
using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Threading;
using Adaptive.Soundtrack;

static class SelfTests
{
    static string Hex(byte[] data)
    {
        var b = new StringBuilder(data.Length * 2);
        foreach (var x in data) b.Append(x.ToString("x2"));
        return b.ToString();
    }

    static byte[] FromHex(string hex)
    {
        var data = new byte[hex.Length / 2];
        for (int i = 0; i < data.Length; i++) data[i] = byte.Parse(hex.Substring(2 * i, 2), NumberStyles.HexNumber);
        return data;
    }

    static string ArgsJson(object[] args)
    {
        var b = new StringBuilder("[");
        for (int i = 0; i < args.Length; i++)
        {
            if (i > 0) b.Append(',');
            var a = args[i];
            if (a is string) b.Append(Program.Quote((string)a));
            else if (a is float) b.Append(((float)a).ToString("R", CultureInfo.InvariantCulture));
            else if (a is double) b.Append(((double)a).ToString("R", CultureInfo.InvariantCulture));
            else b.Append(Convert.ToString(a, CultureInfo.InvariantCulture));
        }
        return b.Append(']').ToString();
    }

    /// <summary>Decodes the server's datagrams from stdin with OscCodec and the typed parsers, then prints what
    /// AdaptiveClient actually sends (caught by a UDP socket standing in for the server).</summary>
    public static int Codec()
    {
        string line;
        while ((line = Console.ReadLine()) != null)
        {
            line = line.Trim();
            if (line.Length == 0) continue;
            try
            {
                var m = OscCodec.Decode(FromHex(line), line.Length / 2);
                string typed = "none";
                switch (m.Address)
                {
                    case Addresses.Welcome: typed = "welcome " + WelcomeInfo.From(m).Role; break;
                    case Addresses.Retry: typed = "retry " + m.GetString(0); break;
                    case Addresses.Beat: typed = "beat " + BeatInfo.From(m).BeatInBar; break;
                    case Addresses.Bar: typed = "bar " + BarInfo.From(m).BarIndex; break;
                    case Addresses.CueChange: typed = "cue_change " + CueChangeInfo.From(m).Cue; break;
                    case Addresses.Transition: typed = "transition " + TransitionInfo.From(m).Phase; break;
                    case Addresses.StingerPlayed: typed = "stinger_played " + StingerInfo.From(m).Stinger; break;
                    case Addresses.Midi: typed = "midi " + MidiInfo.From(m).Status; break;
                    case Addresses.Error: typed = "error " + ServerError.From(m).Code; break;
                    case Addresses.Pong: typed = "pong " + ServerTime.Seconds(m, 1).ToString("R", CultureInfo.InvariantCulture); break;
                }
                Console.WriteLine("{\"kind\":\"decoded\",\"address\":" + Program.Quote(m.Address) + ",\"tags\":" +
                                  Program.Quote(m.TypeTags) + ",\"args\":" + ArgsJson(m.Args) + ",\"typed\":" + Program.Quote(typed) + "}");
            }
            catch (OscFormatException error)
            {
                Console.WriteLine("{\"kind\":\"rejected\",\"hex\":" + Program.Quote(line) + ",\"message\":" + Program.Quote(error.Message) + "}");
            }
        }

        using (var fakeServer = new UdpClient(new IPEndPoint(IPAddress.Loopback, 0)))
        using (var client = new AdaptiveClient("127.0.0.1", ((IPEndPoint)fakeServer.Client.LocalEndPoint).Port, "codec-test", 1000))
        {
            fakeServer.Client.ReceiveTimeout = 2000;
            client.Hello(44100, 2, "f32");
            client.Subscribe("midi");
            client.SetScene("tense", 0.25f, "cave \u00e9"); // non-ASCII: UTF-8 on the wire
            client.SetEmotionPoint(-0.5f, 2f);             // clamped to 1
            client.ForceCue("");
            client.TriggerStinger("impact");
            client.Vote("tense", 0.75f);                     // the audience: a named emotion and an intensity
            client.Vote(0.5f, -2f);                          // a point, arousal clamped to -1, no intensity
            bool refused = false;
            try { client.Vote("", 0.5f); } catch (ArgumentException) { refused = true; }
            try { client.Vote("calm", 1.5f); refused = false; } catch (ArgumentException) { }
            Console.WriteLine("{\"kind\":\"vote_refused\",\"ok\":" + (refused ? "true" : "false") + "}");
            client.Ping();
            Thread.Sleep(5);                                  // the rate cap: 1000 scene messages/s here
            client.SetScene(new string('x', 80), 0.5f, "");  // truncated to 64 characters
            var from = new IPEndPoint(IPAddress.Any, 0);
            for (int i = 0; i < 10; i++)
                Console.WriteLine("{\"kind\":\"sent\",\"hex\":\"" + Hex(fakeServer.Receive(ref from)) + "\"}");
            Console.WriteLine("{\"kind\":\"reply_port\",\"port\":" + client.ReplyPort + "}");
            string proof = AdaptiveClient.HelloProof(System.Text.Encoding.UTF8.GetBytes("0123456789abcdef-secret \u00e9"),
                                                     "0123456789abcdef", "listener", 9001);
            Console.WriteLine("{\"kind\":\"proof\",\"hex\":\"" + proof + "\"}");
        }
        return 0;
    }

    static int failures;
    static readonly List<string> Failures = new List<string>();

    static void Check(bool ok, string what)
    {
        if (ok) return;
        failures++;
        if (Failures.Count < 10) Failures.Add(what);
    }

    /// <summary>The ring under two threads, the playback state machine, and the resampler.</summary>
    public static int Ring()
    {
        // 1. SPSC stress: a producer writes a counting sequence in random chunks, a consumer reads random
        //    chunks and checks every value and the server frame of its read position; the capacity is not a
        //    power of two, so both indices wrap at odd places.
        const int Channels = 2, TotalSamples = 4000000;
        var ring = new PcmRingBuffer(997, Channels);
        var producer = new Thread(() =>
        {
            var random = new Random(1);
            var chunk = new float[1400];
            int next = 0;
            while (next < TotalSamples)
            {
                int n = Math.Min(TotalSamples - next, random.Next(1, 700) * Channels);
                if (ring.FreeSamples < n) { Thread.Yield(); continue; }
                for (int i = 0; i < n; i++) chunk[i] = next + i;
                int written = ring.Write(chunk, 0, n, 1000.0 + next / Channels);
                if (written != n) Check(false, "write of " + n + " wrote " + written);
                next += n;
            }
        });
        producer.Start();
        var random2 = new Random(2);
        var buffer = new float[1200];
        long read = 0;
        double deadline = ClockSync.Now() + 20;
        while (read < TotalSamples && ClockSync.Now() < deadline)
        {
            // Only this thread removes samples: once some are there, the frame asked now is the frame of
            // the samples read next (asked on an empty ring it is -1, and the producer may write before Read).
            if (ring.AvailableSamples == 0) { Thread.Yield(); continue; }
            double frame = ring.NextServerFrame(1.0);
            int n = ring.Read(buffer, 0, random2.Next(1, 600) * Channels);
            if (n == 0) { Thread.Yield(); continue; }
            if (frame != 1000.0 + read / Channels) Check(false, "frame at sample " + read + " is " + frame);
            for (int i = 0; i < n; i++)
                if (buffer[i] != read + i) Check(false, "sample " + (read + i) + " is " + buffer[i]);
            read += n;
        }
        producer.Join();
        Console.WriteLine("{\"kind\":\"ring_stress\",\"samples\":" + read + ",\"dropped\":" + ring.DroppedSamples + "}");

        // 2. Writing more than fits drops the excess, counted, and keeps whole frames.
        var small = new PcmRingBuffer(10, 2);
        int w = small.Write(new float[30], 0, 30, 0);
        Check(w == 20 && small.DroppedSamples == 10, "overfull write: wrote " + w + ", dropped " + small.DroppedSamples);

        // 3. Playback: silence until the prefill, then the stream; an underrun writes zeros, is counted, and
        //    prefills again; a buffer grown past its maximum skips back to the target.
        var pring = new PcmRingBuffer(1000, 2);
        var playback = new PcmStreamPlayback(pring, 48000, 48000, 100 / 48000.0, 64); // prefill 100 frames
        var output = new float[64 * 2];
        var ramp = new float[2000];
        for (int i = 0; i < ramp.Length; i++) ramp[i] = (i + 1) / 10000f;
        pring.Write(ramp, 0, 50 * 2, 0);
        playback.Fill(output, 2, 0.0);
        Check(!playback.IsPlaying && Array.TrueForAll(output, x => x == 0) && playback.UnderrunFrames == 64, "plays before the prefill");
        pring.Write(ramp, 100, 60 * 2, 50); // 110 frames buffered
        playback.Fill(output, 2, 1.0);
        Check(playback.IsPlaying && output[0] == ramp[0] && output[127] == ramp[127], "does not play the stream after the prefill");
        Check(playback.ClockMap.IsAnchored && Math.Abs(playback.ClockMap.FrameToAudioSeconds(48000) - 2.0) < 1e-9,
              "clock map: frame 0 at audio time 1.0 puts frame 48000 at " + playback.ClockMap.FrameToAudioSeconds(48000));
        playback.Fill(output, 2, 2.0); // 46 frames left: underrun
        Check(playback.Underruns == 1 && !playback.IsPlaying && output[91] == ramp[219] && output[92] == 0 && output[127] == 0,
              "underrun: count " + playback.Underruns + ", output[91] " + output[91] + ", output[92] " + output[92]);
        var mono = new float[64];
        pring.Write(ramp, 0, 200 * 2, 110);
        playback.Fill(mono, 1, 3.0);
        Check(Math.Abs(mono[0] - (ramp[0] + ramp[1]) / 2) < 1e-7, "mono output is not the mean of left and right");
        pring.Write(ramp, 0, 900 * 2, 310); // far more than prefill + 2 x ... : skip back to the target
        playback.Fill(output, 2, 4.0);
        Check(playback.SkippedFrames > 0 && pring.AvailableFrames <= playback.PrefillFrames, "no skip back to the target latency: available " + pring.AvailableFrames);

        // 4. Resampler 48 kHz -> 44.1 kHz, random block sizes: a 1 kHz sine stays a 1 kHz sine (linear
        //    interpolation error at 1 kHz: (2 pi 1000 / 48000)^2 / 8 = 0.0021 of full scale at most), and each
        //    block's first output frame position is where the sine says.
        var resampler = new LinearResampler(48000, 44100, 1);
        var rnd = new Random(3);
        var input = new float[4096];
        var outBuf = new float[resampler.MaxOutputFrames(4096)];
        long inFrames = 0, outFrames = 0;
        double maxError = 0;
        for (int block = 0; block < 400; block++)
        {
            int n = rnd.Next(1, 4096);
            for (int i = 0; i < n; i++) input[i] = (float)(0.5 * Math.Sin(2 * Math.PI * 1000 * (inFrames + i) / 48000.0));
            double firstPosition = inFrames + resampler.NextInputPosition;
            int m = resampler.Process(input, n, outBuf);
            for (int j = 0; j < m; j++)
            {
                double expected = 0.5 * Math.Sin(2 * Math.PI * 1000 * (outFrames + j) / 44100.0);
                maxError = Math.Max(maxError, Math.Abs(outBuf[j] - expected));
            }
            if (m > 0) Check(Math.Abs(firstPosition - outFrames * 48000 / 44100.0) < 1e-6, "block " + block + " starts at input frame " + firstPosition);
            inFrames += n;
            outFrames += m;
        }
        Console.WriteLine("{\"kind\":\"resampler\",\"in_frames\":" + inFrames + ",\"out_frames\":" + outFrames +
                          ",\"max_error\":" + maxError.ToString("R", CultureInfo.InvariantCulture) + "}");
        // 5. Zones: the highest priority wins, the latest entered among equals; leaving returns to the one below.
        var priorities = new Dictionary<string, int> { { "cave", 0 }, { "arena", 1 }, { "river", 0 } };
        var stack = new ZoneStack<string>(zone => priorities[zone]);
        var tops = new List<string>();
        Action<string> record = what => tops.Add(what + "=" + (stack.Top ?? "-"));
        stack.Enter("cave"); record("+cave");
        stack.Enter("arena"); record("+arena");
        stack.Enter("river"); record("+river");
        stack.Exit("arena"); record("-arena");
        stack.Enter("cave"); record("+cave");
        priorities["river"] = 2; record("river2");
        Check(!stack.Exit("nowhere"), "leaving a zone never entered");
        stack.Exit("river"); stack.Exit("cave"); record("-all");
        Console.WriteLine("{\"kind\":\"zones\",\"tops\":" + Program.Quote(string.Join(" ", tops)) + "}");
        Console.WriteLine("{\"kind\":\"checks\",\"failures\":" + failures + ",\"first\":" + Program.Quote(string.Join(" | ", Failures)) + "}");
        return failures == 0 ? 0 : 1;
    }
}
