// Streaming linear-interpolation resampler, for when the engine's output rate differs from the session's.
// Linear interpolation attenuates the top octave a little and aliases a little; it is chosen because it is
// allocation-free, needs no library and costs a few operations per sample. Prefer setting the engine's
// output rate to the session's (48 kHz) where you can: then no resampling happens at all.
using System;

namespace Adaptive.Soundtrack
{
    /// <summary>Converts interleaved blocks from <see cref="InputRateHz"/> to <see cref="OutputRateHz"/>, keeping
    /// its position across blocks (continuous output). Used by one thread.</summary>
    public sealed class LinearResampler
    {
        public readonly int InputRateHz, OutputRateHz, Channels;
        readonly double step;            // input frames per output frame
        readonly float[] previousFrame;  // the last input frame of the previous block
        double position;                 // next output frame's position, input frames, relative to the block start (-1..0 = in previousFrame)
        bool primed;

        public LinearResampler(int inputRateHz, int outputRateHz, int channels)
        {
            if (inputRateHz <= 0 || outputRateHz <= 0) throw new ArgumentOutOfRangeException("rates must be > 0 Hz");
            InputRateHz = inputRateHz; OutputRateHz = outputRateHz; Channels = channels;
            step = inputRateHz / (double)outputRateHz;
            previousFrame = new float[channels];
        }

        /// <summary>Output frames that at most come out of <paramref name="inputFrames"/> input frames.</summary>
        public int MaxOutputFrames(int inputFrames) { return (int)Math.Ceiling((inputFrames + 1) / step) + 1; }

        /// <summary>The input position (frames from the start of the next block, may be negative) of the next
        /// output frame: the first output frame of the next Process call is input frame blockStart + this.</summary>
        public double NextInputPosition { get { return primed ? position : 0; } }

        /// <summary>Resamples <paramref name="inputFrames"/> frames of input into output; returns output frames written.
        /// output must hold <see cref="MaxOutputFrames"/> frames.</summary>
        public int Process(float[] input, int inputFrames, float[] output)
        {
            if (!primed) { position = 0; primed = true; }
            int written = 0, c = Channels;
            while (position < inputFrames - 1 || (position < 0 && inputFrames > 0))
            {
                int i0 = (int)Math.Floor(position);
                double t = position - i0;
                for (int ch = 0; ch < c; ch++)
                {
                    float a = i0 < 0 ? previousFrame[ch] : input[i0 * c + ch];
                    float b = input[(i0 + 1) * c + ch];
                    output[written * c + ch] = (float)(a + (b - a) * t);
                }
                written++;
                position += step;
            }
            if (inputFrames > 0)
            {
                Array.Copy(input, (inputFrames - 1) * c, previousFrame, 0, c);
                position -= inputFrames; // now relative to the next block; the last input frame is at -1
            }
            return written;
        }
    }
}
