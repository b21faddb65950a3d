// Reads the server's plain TCP audio stream (docs/protocol.md, "The audio stream"; bridge/audio.py):
// blocks back to back, each a 32-byte little-endian header (struct "<4sIQIHHII": magic "ADA1", sequence u32,
// first_frame u64, n_frames u32, channels u16, sample_format u16 (1 = int16, 3 = float32), sample_rate_hz u32,
// reserved u32 = 0) followed by interleaved PCM. Runs on its own thread, converts to float, resamples to the
// output rate if it differs, and fills a PcmRingBuffer.
using System;
using System.IO;
using System.Net.Sockets;
using System.Threading;

namespace Adaptive.Soundtrack
{
    /// <summary>One decoded audio block header.</summary>
    public struct AudioBlockHeader
    {
        public const int Bytes = 32;
        public const int MaxChannels = 8;
        public const int MaxPcmBytes = 16 * 1024 * 1024; // bridge/audio.py MAX_PCM_BYTES
        public uint Sequence;
        public ulong FirstFrame;
        public int Frames;
        public int Channels;
        public int SampleFormat;   // 1 = int16 LE, 3 = float32 LE
        public int SampleRateHz;

        public int BytesPerSample { get { return SampleFormat == 1 ? 2 : 4; } }
        public int PcmBytes { get { return Frames * Channels * BytesPerSample; } }

        static bool IsMagic(byte[] b, int o) { return b[o] == 'A' && b[o + 1] == 'D' && b[o + 2] == 'A' && b[o + 3] == '1'; }
        static uint U32(byte[] b, int o) { return (uint)(b[o] | b[o + 1] << 8 | b[o + 2] << 16 | b[o + 3] << 24); }
        static int U16(byte[] b, int o) { return b[o] | b[o + 1] << 8; }

        /// <summary>Decodes 32 bytes at <paramref name="offset"/>; null and a reason if they are not a valid header.</summary>
        public static AudioBlockHeader? TryDecode(byte[] b, int offset, out string problem)
        {
            problem = null;
            if (!IsMagic(b, offset)) { problem = "bad magic (expected ADA1)"; return null; }
            var h = new AudioBlockHeader
            {
                Sequence = U32(b, offset + 4),
                FirstFrame = U32(b, offset + 8) | (ulong)U32(b, offset + 12) << 32,
                Frames = (int)Math.Min(int.MaxValue, U32(b, offset + 16)),
                Channels = U16(b, offset + 20),
                SampleFormat = U16(b, offset + 22),
                SampleRateHz = (int)Math.Min(int.MaxValue, U32(b, offset + 24)),
            };
            if (h.SampleFormat != 1 && h.SampleFormat != 3) problem = "unknown sample_format " + h.SampleFormat + " (allowed: 1 = int16, 3 = float32)";
            else if (h.Channels < 1 || h.Channels > MaxChannels) problem = "channels = " + h.Channels + " (allowed: 1.." + MaxChannels + ")";
            else if (h.SampleRateHz <= 0) problem = "sample_rate_hz = 0";
            else if (U32(b, offset + 28) != 0) problem = "reserved field is not 0";
            else if ((long)h.Frames * h.Channels * h.BytesPerSample > MaxPcmBytes) problem = "PCM larger than " + MaxPcmBytes + " bytes";
            if (problem != null) return null;
            return h;
        }
    }

    /// <summary>
    /// Connects to the server's TCP audio stream and fills a <see cref="PcmRingBuffer"/> with float samples at
    /// <see cref="OutputRateHz"/> (resampled linearly when the session rate differs). Reconnects after a
    /// disconnect. Counters are safe to read from any thread.
    /// </summary>
    public sealed class TcpAudioReceiver : IDisposable
    {
        readonly string host;
        readonly int port;
        readonly PcmRingBuffer ring;
        Thread thread;
        volatile bool running;
        volatile TcpClient tcp;
        LinearResampler resampler;
        byte[] pcm = new byte[0];
        float[] floats = new float[0];
        float[] resampled = new float[0];
        uint lastSequence;
        bool haveSequence;

        /// <summary>Rate the ring is filled at: the engine's output rate.</summary>
        public readonly int OutputRateHz;
        long blocks, gaps, missingBlocks, resyncBytes, connects;
        int sessionRateHz;
        /// <summary>Blocks received.</summary>
        public long Blocks { get { return Interlocked.Read(ref blocks); } }
        /// <summary>Places where the sequence number jumped (blocks dropped by the server for a slow reader).</summary>
        public long SequenceGaps { get { return Interlocked.Read(ref gaps); } }
        public long MissingBlocks { get { return Interlocked.Read(ref missingBlocks); } }
        /// <summary>Bytes skipped while looking for the next header's magic.</summary>
        public long ResyncBytes { get { return Interlocked.Read(ref resyncBytes); } }
        public long Connects { get { return Interlocked.Read(ref connects); } }
        /// <summary>The session's sample rate from the last header (0 before the first block).</summary>
        public int SessionRateHz { get { return Volatile.Read(ref sessionRateHz); } }
        /// <summary>The last connection or stream problem, for logs (null if none).</summary>
        public volatile string LastProblem;

        /// <summary>Network thread: called after each block is decoded (before resampling) with its header and
        /// its interleaved float samples (valid only during the call). For logging and tests.</summary>
        public Action<AudioBlockHeader, float[], int> BlockReceived;

        /// <param name="ring">filled with the session's channels (2) at <paramref name="outputRateHz"/>.</param>
        /// <param name="clientId">the welcome's client_id: a server with credentials streams nothing until a
        /// connection has sent it and a newline (docs/network.md); null or "" sends nothing first.</param>
        public TcpAudioReceiver(string host, int port, PcmRingBuffer ring, int outputRateHz, string clientId = null)
        {
            if (port <= 0 || port > 65535) throw new ArgumentOutOfRangeException("port", "the welcome's audio_tcp_port (0 means the server has no TCP audio stream)");
            this.host = host; this.port = port; this.ring = ring; OutputRateHz = outputRateHz;
            this.clientId = clientId ?? "";
        }

        readonly string clientId;

        public void Start()
        {
            if (running) return;
            running = true;
            thread = new Thread(Run) { IsBackground = true, Name = "adaptive-audio-receive" };
            thread.Start();
        }

        void Run()
        {
            while (running)
            {
                try
                {
                    using (var client = new TcpClient())
                    {
                        tcp = client;
                        client.NoDelay = true;
                        client.Connect(host, port);
                        Interlocked.Increment(ref connects);
                        haveSequence = false;
                        var stream = client.GetStream();
                        if (clientId.Length > 0)
                        {
                            byte[] token = System.Text.Encoding.ASCII.GetBytes(clientId + "\n");
                            stream.Write(token, 0, token.Length);
                        }
                        ReadBlocks(stream);
                    }
                }
                catch (Exception error) when (error is IOException || error is SocketException || error is ObjectDisposedException || error is InvalidOperationException)
                {
                    if (running) LastProblem = error.Message;
                }
                if (running) Thread.Sleep(500); // reconnect
            }
        }

        static bool ReadExactly(Stream stream, byte[] buffer, int offset, int count)
        {
            while (count > 0)
            {
                int n = stream.Read(buffer, offset, count);
                if (n <= 0) return false;
                offset += n; count -= n;
            }
            return true;
        }

        void ReadBlocks(Stream stream)
        {
            var header = new byte[AudioBlockHeader.Bytes];
            if (!ReadExactly(stream, header, 0, 4)) return;
            while (running)
            {
                // Resync: slide one byte at a time until the magic is found.
                while (!(header[0] == 'A' && header[1] == 'D' && header[2] == 'A' && header[3] == '1'))
                {
                    Buffer.BlockCopy(header, 1, header, 0, 3);
                    if (!ReadExactly(stream, header, 3, 1)) return;
                    Interlocked.Increment(ref resyncBytes);
                }
                if (!ReadExactly(stream, header, 4, AudioBlockHeader.Bytes - 4)) return;
                string problem;
                var decoded = AudioBlockHeader.TryDecode(header, 0, out problem);
                if (decoded == null)
                {
                    LastProblem = "bad audio header: " + problem;
                    header[0] = 0; // the magic was inside PCM: look further
                    continue;
                }
                var h = decoded.Value;
                if (pcm.Length < h.PcmBytes) pcm = new byte[h.PcmBytes];
                if (!ReadExactly(stream, pcm, 0, h.PcmBytes)) return;
                OnBlock(h);
                if (!ReadExactly(stream, header, 0, 4)) return;
            }
        }

        void OnBlock(AudioBlockHeader h)
        {
            Interlocked.Increment(ref blocks);
            if (haveSequence && h.Sequence != unchecked(lastSequence + 1))
            {
                Interlocked.Increment(ref gaps);
                Interlocked.Add(ref missingBlocks, unchecked((uint)(h.Sequence - lastSequence - 1)));
            }
            lastSequence = h.Sequence;
            haveSequence = true;
            Volatile.Write(ref sessionRateHz, h.SampleRateHz);

            int count = h.Frames * h.Channels;
            if (floats.Length < count) floats = new float[count];
            if (h.SampleFormat == 1)
                for (int i = 0; i < count; i++) floats[i] = (short)(pcm[2 * i] | pcm[2 * i + 1] << 8) / 32767f; // bridge/audio.py: s / 32767
            else
                for (int i = 0; i < count; i++) floats[i] = BitConverter.ToSingle(pcm, 4 * i); // little-endian hosts (every Unity target)
            if (BlockReceived != null) BlockReceived(h, floats, count);

            if (h.Channels != ring.Channels)
            {
                LastProblem = "the stream has " + h.Channels + " channels, the ring " + ring.Channels + ": block dropped";
                return;
            }
            if (h.SampleRateHz == OutputRateHz)
            {
                ring.Write(floats, 0, count, h.FirstFrame);
                return;
            }
            if (resampler == null || resampler.InputRateHz != h.SampleRateHz)
                resampler = new LinearResampler(h.SampleRateHz, OutputRateHz, h.Channels);
            int maxOut = resampler.MaxOutputFrames(h.Frames) * h.Channels;
            if (resampled.Length < maxOut) resampled = new float[maxOut];
            double firstFrame = h.FirstFrame + resampler.NextInputPosition;
            int frames = resampler.Process(floats, h.Frames, resampled);
            ring.Write(resampled, 0, frames * h.Channels, firstFrame);
        }

        public void Dispose()
        {
            running = false;
            var client = tcp;
            if (client != null) client.Close();
            if (thread != null) thread.Join(1000);
        }
    }
}
