// A single-producer single-consumer ring of interleaved float samples, preallocated, lock-free:
// the network thread writes, the audio thread reads, neither allocates nor locks.
// Indices are monotonically increasing 64-bit sample counts published with Volatile.Write and read
// with Volatile.Read (release/acquire), the classic Lamport SPSC queue.
using System;
using System.Threading;

namespace Adaptive.Soundtrack
{
    /// <summary>
    /// Interleaved float samples with, for each write, the session frame (fractional after resampling) of
    /// its first frame, so the reader knows which server frame it is playing. One producer thread calls
    /// <see cref="Write"/>, one consumer thread calls <see cref="Read"/>; any thread may read the counters.
    /// </summary>
    public sealed class PcmRingBuffer
    {
        readonly float[] samples;
        readonly long[] anchorSampleIndex;   // ring of (sample index of a write's first sample, its server frame)
        readonly double[] anchorServerFrame;
        long writeIndex;      // samples ever written (producer owns, consumer reads)
        long readIndex;       // samples ever read (consumer owns, producer reads)
        long anchorWrite;     // anchors ever written
        long anchorRead;      // anchors ever consumed
        // Consumer-only: the newest anchor at or before readIndex.
        long currentAnchorSample = -1;
        double currentAnchorFrame;
        long droppedSamples;

        /// <summary>Interleaved channels per frame.</summary>
        public readonly int Channels;
        /// <summary>Capacity in samples (frames x channels).</summary>
        public readonly int CapacitySamples;

        /// <param name="capacityFrames">frames the ring holds (> 0).</param>
        /// <param name="channels">interleaved channels (1..8).</param>
        /// <param name="maxAnchors">writes remembered for frame lookup (default 1024).</param>
        public PcmRingBuffer(int capacityFrames, int channels, int maxAnchors = 1024)
        {
            if (capacityFrames <= 0) throw new ArgumentOutOfRangeException("capacityFrames", "must be > 0");
            if (channels < 1 || channels > 8) throw new ArgumentOutOfRangeException("channels", "allowed: 1..8");
            Channels = channels;
            CapacitySamples = capacityFrames * channels;
            samples = new float[CapacitySamples];
            anchorSampleIndex = new long[maxAnchors];
            anchorServerFrame = new double[maxAnchors];
        }

        /// <summary>Samples waiting to be read.</summary>
        public int AvailableSamples { get { return (int)(Volatile.Read(ref writeIndex) - Volatile.Read(ref readIndex)); } }
        public int AvailableFrames { get { return AvailableSamples / Channels; } }
        /// <summary>Samples that can be written without overwriting unread ones.</summary>
        public int FreeSamples { get { return CapacitySamples - AvailableSamples; } }
        /// <summary>Samples the producer could not write because the ring was full (lost, counted).</summary>
        public long DroppedSamples { get { return Volatile.Read(ref droppedSamples); } }

        /// <summary>Producer: writes whole frames from <paramref name="source"/>[offset..offset+count), whose first frame
        /// is session frame <paramref name="serverFrame"/>. If the ring lacks room, only what fits is written
        /// and the rest is dropped and counted. Returns the samples written.</summary>
        public int Write(float[] source, int offset, int count, double serverFrame)
        {
            long write = writeIndex; // own index: plain read
            long read = Volatile.Read(ref readIndex);
            int free = CapacitySamples - (int)(write - read);
            int n = Math.Min(count, free) / Channels * Channels;
            if (n < count) Interlocked.Add(ref droppedSamples, count - n);
            if (n <= 0) return 0;
            long anchors = anchorWrite;
            if (anchors - Volatile.Read(ref anchorRead) < anchorSampleIndex.Length)
            {
                int slot = (int)(anchors % anchorSampleIndex.Length);
                anchorSampleIndex[slot] = write;
                anchorServerFrame[slot] = serverFrame;
                Volatile.Write(ref anchorWrite, anchors + 1);
            } // else: no room for the anchor; frames stay counted from the previous one
            int start = (int)(write % CapacitySamples);
            int first = Math.Min(n, CapacitySamples - start);
            Array.Copy(source, offset, samples, start, first);
            if (n > first) Array.Copy(source, offset + first, samples, 0, n - first);
            Volatile.Write(ref writeIndex, write + n);
            return n;
        }

        /// <summary>Consumer: reads up to <paramref name="count"/> samples into destination[offset..]. Never
        /// allocates or blocks. Returns the samples read (whole frames).</summary>
        public int Read(float[] destination, int offset, int count)
        {
            long read = readIndex;
            long write = Volatile.Read(ref writeIndex);
            int n = (int)Math.Min(count, write - read) / Channels * Channels;
            if (n <= 0) return 0;
            int start = (int)(read % CapacitySamples);
            int first = Math.Min(n, CapacitySamples - start);
            Array.Copy(samples, start, destination, offset, first);
            if (n > first) Array.Copy(samples, 0, destination, offset + first, n - first);
            Volatile.Write(ref readIndex, read + n);
            return n;
        }

        /// <summary>Consumer: the session frame of the next sample to be read (fractional after resampling),
        /// or -1 before the first write. <paramref name="serverFramesPerRingFrame"/> is serverRate / ringRate.</summary>
        public double NextServerFrame(double serverFramesPerRingFrame)
        {
            long read = readIndex;
            long anchors = Volatile.Read(ref anchorWrite);
            long consumed = anchorRead;
            while (consumed < anchors)
            {
                int slot = (int)(consumed % anchorSampleIndex.Length);
                if (anchorSampleIndex[slot] > read) break;
                currentAnchorSample = anchorSampleIndex[slot];
                currentAnchorFrame = anchorServerFrame[slot];
                consumed++;
            }
            Volatile.Write(ref anchorRead, consumed);
            if (currentAnchorSample < 0) return -1;
            return currentAnchorFrame + (read - currentAnchorSample) / Channels * serverFramesPerRingFrame;
        }
    }
}
