// NTP-style clock sync between server time and a local monotonic clock (docs/protocol.md, "Time").
// Formulas: RFC 5905 section 8 (offset = ((t1 - t0) + (t2 - t3)) / 2, delay = (t3 - t0) - (t2 - t1));
// the sample with the smallest delay wins, as NTP's clock filter does.
using System;
using System.Diagnostics;

namespace Adaptive.Soundtrack
{
    /// <summary>Maps server time (seconds since the session started) to local monotonic seconds
    /// (<see cref="Now"/>), from ping/pong samples. Thread-safe.</summary>
    public sealed class ClockSync
    {
        static readonly Stopwatch Clock = Stopwatch.StartNew();
        readonly object gate = new object();
        double offsetSeconds;
        double roundTripSeconds = double.PositiveInfinity;
        int samples;

        /// <summary>Local monotonic time, seconds (a process-wide Stopwatch).</summary>
        public static double Now() { return Clock.ElapsedTicks / (double)Stopwatch.Frequency; }

        /// <summary>Server time minus local time, seconds (server = local + offset), from the best sample.</summary>
        public double OffsetSeconds { get { lock (gate) return offsetSeconds; } }

        /// <summary>Round trip of the best sample minus the server's handling time, seconds; the offset's
        /// error is at most half of it. Infinity before the first sample.</summary>
        public double RoundTripSeconds { get { lock (gate) return roundTripSeconds; } }

        /// <summary>Pongs used so far.</summary>
        public int Samples { get { lock (gate) return samples; } }

        public bool IsSynced { get { return Samples > 0; } }

        /// <summary>Adds one ping/pong: t0 local send, t1 server receive, t2 server send, t3 local receive (seconds).
        /// Returns true if this sample became the best one.</summary>
        public bool AddSample(double t0, double t1, double t2, double t3)
        {
            double delay = (t3 - t0) - (t2 - t1);
            double offset = ((t1 - t0) + (t2 - t3)) / 2.0;
            lock (gate)
            {
                samples++;
                if (delay >= roundTripSeconds) return false;
                roundTripSeconds = Math.Max(0.0, delay);
                offsetSeconds = offset;
                return true;
            }
        }

        /// <summary>Forget every sample (e.g. after reconnecting to a new session).</summary>
        public void Reset()
        {
            lock (gate) { offsetSeconds = 0; roundTripSeconds = double.PositiveInfinity; samples = 0; }
        }

        public double ServerToLocal(double serverSeconds) { return serverSeconds - OffsetSeconds; }
        public double LocalToServer(double localSeconds) { return localSeconds + OffsetSeconds; }
    }

    /// <summary>Maps the session's frames to an audio clock (Unity's AudioSettings.dspTime, or any clock in
    /// seconds) from anchors "this server frame was at the output at this audio-clock time", written by
    /// the audio thread and read by any other thread without a lock (a seqlock: the writer bumps a version
    /// before and after; a reader retries while the version is odd or changed).</summary>
    public sealed class AudioClockMap
    {
        int version;
        double anchorAudioSeconds;
        double anchorServerFrame;
        double serverRateHz = 1;

        /// <summary>Audio thread: the output sample at <paramref name="audioSeconds"/> is server frame
        /// <paramref name="serverFrame"/> (fractional after resampling); the server runs at <paramref name="serverRateHz"/>.</summary>
        public void Anchor(double audioSeconds, double serverFrame, double serverRateHz)
        {
            System.Threading.Interlocked.Increment(ref version);
            anchorAudioSeconds = audioSeconds;
            anchorServerFrame = serverFrame;
            this.serverRateHz = serverRateHz;
            System.Threading.Interlocked.Increment(ref version);
        }

        /// <summary>False until the audio thread anchored the map once.</summary>
        public bool IsAnchored { get { return System.Threading.Volatile.Read(ref version) > 0; } }

        /// <summary>The audio-clock time (seconds) at which server frame <paramref name="serverFrame"/> is heard.</summary>
        public double FrameToAudioSeconds(double serverFrame)
        {
            while (true)
            {
                int before = System.Threading.Volatile.Read(ref version);
                double audio = anchorAudioSeconds, frame = anchorServerFrame, rate = serverRateHz;
                System.Threading.Thread.MemoryBarrier();
                if ((before & 1) == 0 && before == System.Threading.Volatile.Read(ref version))
                    return audio + (serverFrame - frame) / rate;
            }
        }
    }
}
