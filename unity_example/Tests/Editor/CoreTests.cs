// Edit Mode tests of the engine-independent Core (Unity's Test Framework: Window > General > Test Runner >
// EditMode, once the project lists this package under "testables" in Packages/manifest.json). They need no
// server and no Play Mode. The same file also runs outside Unity, under Mono, in the repository's tests
// (tests/clients/test_unity_console.py): with Debian's NUnit 2.6 console runner, or where that is not
// installed, against a stand-in of the few NUnit attributes and asserts it uses.
using System;
using System.Collections.Generic;
using NUnit.Framework;

namespace Adaptive.Soundtrack.Tests
{
    [TestFixture]
    public class CoreTests
    {
        [Test]
        public void OscMessagesSurviveEncodingAndDecoding()
        {
            byte[] datagram = OscCodec.Encode("/adaptive/scene", "calm", 0.5f, "forest");
            Assert.AreEqual(0, datagram.Length % 4, "OSC pads every part to 4 bytes");
            OscMessage message = OscCodec.Decode(datagram, datagram.Length);
            Assert.AreEqual("/adaptive/scene", message.Address);
            Assert.AreEqual("sfs", message.TypeTags);
            Assert.AreEqual("calm", message.GetString(0));
            Assert.AreEqual(0.5, message.GetNumber(1), 1e-9);
            Assert.AreEqual("forest", message.GetString(2));
        }

        [Test]
        public void AMalformedDatagramIsRefused()
        {
            Assert.Throws<OscFormatException>(() => OscCodec.Decode(new byte[] { 0x2f, 0x61, 0x00 }, 3));
        }

        [Test]
        public void AnOverfullRingWriteDropsTheExcessInWholeFrames()
        {
            var ring = new PcmRingBuffer(10, 2);
            int written = ring.Write(new float[30], 0, 30, 0);
            Assert.AreEqual(20, written);
            Assert.AreEqual(10L, (long)ring.DroppedSamples);
        }

        [Test]
        public void PlaybackPrefillsThenPlaysThenCountsAnUnderrun()
        {
            var ring = new PcmRingBuffer(1000, 2);
            var playback = new PcmStreamPlayback(ring, 48000, 48000, 100 / 48000.0, 64); // prefill 100 frames
            var output = new float[64 * 2];
            var ramp = new float[2000];
            for (int i = 0; i < ramp.Length; i++) ramp[i] = (i + 1) / 10000f;
            ring.Write(ramp, 0, 50 * 2, 0);
            playback.Fill(output, 2, 0.0);
            Assert.IsFalse(playback.IsPlaying, "plays before the prefill");
            Assert.AreEqual(0f, output[0]);
            ring.Write(ramp, 100, 60 * 2, 50); // 110 frames buffered
            playback.Fill(output, 2, 1.0);
            Assert.IsTrue(playback.IsPlaying, "does not play after the prefill");
            Assert.AreEqual(ramp[0], output[0]);
            playback.Fill(output, 2, 2.0); // 46 frames left
            Assert.AreEqual(1L, playback.Underruns);
            Assert.AreEqual(0f, output[127]);
        }

        [Test]
        public void PlaybackSkipsBackToTheTargetLatencyAfterAHitch()
        {
            var ring = new PcmRingBuffer(4000, 2);
            var playback = new PcmStreamPlayback(ring, 48000, 48000, 100 / 48000.0, 64);
            var output = new float[64 * 2];
            ring.Write(new float[200 * 2], 0, 200 * 2, 0);
            playback.Fill(output, 2, 0.0);
            ring.Write(new float[1800 * 2], 0, 1800 * 2, 200); // a hitch: far more than the target buffered
            playback.Fill(output, 2, 1.0);
            Assert.Greater(playback.SkippedFrames, 0L);
            Assert.LessOrEqual(ring.AvailableFrames, playback.PrefillFrames);
        }

        [Test]
        public void TheResamplerKeepsASineASine()
        {
            var resampler = new LinearResampler(48000, 44100, 1);
            var input = new float[4800];
            for (int i = 0; i < input.Length; i++) input[i] = (float)(0.5 * Math.Sin(2 * Math.PI * 1000 * i / 48000.0));
            var output = new float[resampler.MaxOutputFrames(input.Length)];
            int frames = resampler.Process(input, input.Length, output);
            Assert.AreEqual(4410, frames, 1);
            double maxError = 0;
            for (int j = 0; j < frames; j++)
                maxError = Math.Max(maxError, Math.Abs(output[j] - 0.5 * Math.Sin(2 * Math.PI * 1000 * j / 44100.0)));
            Assert.Less(maxError, 0.0021, "linear interpolation of 1 kHz at 48 kHz errs by at most (2 pi 1000 / 48000)^2 / 8");
        }

        [Test]
        public void TheHighestPriorityZoneWinsThenTheLatestEntered()
        {
            var priorities = new Dictionary<string, int> { { "cave", 0 }, { "arena", 1 }, { "river", 0 } };
            var stack = new ZoneStack<string>(zone => priorities[zone]);
            stack.Enter("cave");
            stack.Enter("arena");
            stack.Enter("river");
            Assert.AreEqual("arena", stack.Top);
            stack.Exit("arena");
            Assert.AreEqual("river", stack.Top);
            Assert.IsFalse(stack.Exit("nowhere"));
            stack.Exit("river");
            stack.Exit("cave");
            Assert.IsNull(stack.Top);
        }

        [Test]
        public void AVoteNeedsAnEmotionNameOrAPointAndAnIntensityInRange()
        {
            using (var client = new AdaptiveClient("127.0.0.1", 9, "vote-test"))
            {
                Assert.Throws<ArgumentException>(() => client.Vote("", 0.5f));
                Assert.Throws<ArgumentException>(() => client.Vote("calm", 1.5f));
                Assert.Throws<ArgumentException>(() => client.Vote(0f, 0f, -0.5f));
            }
        }
    }
}
