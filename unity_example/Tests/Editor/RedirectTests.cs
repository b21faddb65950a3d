// Edit Mode tests of AdaptiveClient on a cluster (docs/cluster.md): a hello answered by session_elsewhere
// is said again to the node it names, with its session id, as the Python client does (bridge/client.py);
// at most 3 redirects in a row; a redirect with a bad argument is refused and changes nothing. The nodes are
// fakes (FakeNetwork below: no socket, no server); each answers a hello at once, inside Send. The same file
// runs under Mono in the repository's tests (tests/clients/test_unity_console.py), as CoreTests.cs does.
using System;
using System.Collections.Concurrent;
using System.Collections.Generic;
using System.Threading;
using NUnit.Framework;

namespace Adaptive.Soundtrack.Tests
{
    /// <summary>Fake nodes by "host:port": each answers a hello with the message its function returns (null:
    /// no answer). Every datagram a client sends is recorded with the node it went to.</summary>
    sealed class FakeNetwork
    {
        public readonly Dictionary<string, Func<OscMessage, OscMessage>> Nodes = new Dictionary<string, Func<OscMessage, OscMessage>>();
        readonly List<KeyValuePair<string, OscMessage>> sent = new List<KeyValuePair<string, OscMessage>>();
        public readonly List<FakeLink> Links = new List<FakeLink>();
        int nextLocalPort = 40000;

        public IOscTransport Connect(string host, int port)
        {
            if (host.EndsWith(".invalid")) throw new ArgumentException("no IPv4 address for host '" + host + "'");
            lock (sent)
            {
                var link = new FakeLink(this, host + ":" + port, nextLocalPort++);
                Links.Add(link);
                return link;
            }
        }

        public void Record(string node, OscMessage message)
        {
            lock (sent) sent.Add(new KeyValuePair<string, OscMessage>(node, message));
        }

        /// <summary>The hellos sent so far, as (node, hello), oldest first.</summary>
        public List<KeyValuePair<string, OscMessage>> Hellos()
        {
            lock (sent) return sent.FindAll(pair => pair.Value.Address == Addresses.Hello);
        }

        public List<KeyValuePair<string, OscMessage>> Sent()
        {
            lock (sent) return new List<KeyValuePair<string, OscMessage>>(sent);
        }
    }

    sealed class FakeLink : IOscTransport
    {
        readonly FakeNetwork network;
        public readonly string Node;
        readonly int localPort;
        readonly BlockingCollection<byte[]> replies = new BlockingCollection<byte[]>();
        public volatile bool Disposed;

        public FakeLink(FakeNetwork network, string node, int localPort)
        {
            this.network = network;
            Node = node;
            this.localPort = localPort;
        }

        public int LocalPort { get { return localPort; } }

        public void Send(byte[] datagram)
        {
            if (Disposed) throw new ObjectDisposedException("FakeLink to " + Node);
            var message = OscCodec.Decode(datagram, datagram.Length);
            network.Record(Node, message);
            Func<OscMessage, OscMessage> answer;
            if (message.Address != Addresses.Hello || !network.Nodes.TryGetValue(Node, out answer)) return;
            var reply = answer(message);
            if (reply != null) replies.Add(OscCodec.Encode(reply.Address, reply.Args));
        }

        public byte[] Receive()
        {
            if (Disposed) throw new ObjectDisposedException("FakeLink to " + Node);
            byte[] datagram;
            return replies.TryTake(out datagram, 20) ? datagram : null;
        }

        public void Dispose() { Disposed = true; }
    }

    [TestFixture]
    public class RedirectTests
    {
        const double WaitSeconds = 5.0;

        static OscMessage Elsewhere(string sessionId, string host, int oscPort, int zmqControlPort = 0, int audioTcpPort = 0)
        {
            return new OscMessage(Addresses.SessionElsewhere, sessionId, host, oscPort, zmqControlPort, audioTcpPort);
        }

        /// <summary>A welcome to the hello's session (its argument 8), as a node hosting it sends.</summary>
        static OscMessage WelcomeTo(OscMessage hello, int audioTcpPort)
        {
            return new OscMessage(Addresses.Welcome, 1, hello.GetString(8), 48000, 1024, 40f, audioTcpPort, 1, 0,
                                  "0123456789abcdef0123456789abcdef", "control", 30);
        }

        /// <summary>Dispatches on this thread until <paramref name="done"/> holds; false after the wait.</summary>
        static bool DispatchUntil(AdaptiveClient client, Func<bool> done)
        {
            double deadline = ClockSync.Now() + WaitSeconds;
            while (!done() && ClockSync.Now() < deadline)
            {
                client.DispatchPending();
                Thread.Sleep(2);
            }
            client.DispatchPending();
            return done();
        }

        [Test]
        public void AHelloAnsweredBySessionElsewhereIsSaidAgainToTheNamedNodeWithItsSessionId()
        {
            var network = new FakeNetwork();
            network.Nodes["10.0.0.1:9000"] = hello => Elsewhere("arena-9", "10.0.0.7", 9100, 9103, 9101);
            network.Nodes["10.0.0.7:9100"] = hello => WelcomeTo(hello, 9101);
            using (var client = new AdaptiveClient("10.0.0.1", 9000, "redirect-test", session: "new", connect: network.Connect))
            {
                var seen = new List<string>();
                client.Redirected += r => seen.Add("redirected " + r.SessionId + " " + r.Host + ":" + r.OscPort + " from " + r.FromHost + ":" + r.FromOscPort);
                client.WelcomeReceived += w => seen.Add("welcome " + w.SessionId);
                int firstReplyPort = client.ReplyPort;
                client.Hello(48000, 2, "s16");
                Assert.IsTrue(DispatchUntil(client, () => seen.Count == 2), "no welcome: " + string.Join("; ", seen.ToArray()));
                Assert.AreEqual("redirected arena-9 10.0.0.7:9100 from 10.0.0.1:9000", seen[0]);
                Assert.AreEqual("welcome arena-9", seen[1]);

                var hellos = network.Hellos();
                Assert.AreEqual(2, hellos.Count);
                Assert.AreEqual("10.0.0.1:9000", hellos[0].Key);
                Assert.AreEqual("new", hellos[0].Value.GetString(8));
                Assert.AreEqual(firstReplyPort, hellos[0].Value.GetInt(0));
                // The same hello (rate, channels, format, name, role), to the named node, with the session id it gave,
                // from a new link: the one to the first node is closed.
                Assert.AreEqual("10.0.0.7:9100", hellos[1].Key);
                Assert.AreEqual("arena-9", hellos[1].Value.GetString(8));
                for (int i = 1; i <= 5; i++) Assert.AreEqual(hellos[0].Value.Args[i], hellos[1].Value.Args[i], "hello argument " + i);
                Assert.AreEqual(client.ReplyPort, hellos[1].Value.GetInt(0));
                Assert.IsTrue(client.ReplyPort != firstReplyPort, "the reply port of the first node's link was kept");
                Assert.IsTrue(network.Links[0].Disposed, "the link to the node that redirected is still open");
                Assert.IsFalse(network.Links[1].Disposed);

                Assert.AreEqual("10.0.0.7", client.Host);
                Assert.AreEqual(9100, client.Port);
                Assert.AreEqual("arena-9", client.Session);
                Assert.AreEqual(9101, client.Welcome.AudioTcpPort);
                Assert.AreEqual(9103, client.RedirectedFrom.ZmqControlPort);
                Assert.AreEqual(9101, client.RedirectedFrom.AudioTcpPort);
                Assert.IsNull(client.RedirectFailure);

                // Everything after goes to the hosting node.
                client.TriggerStinger("danger");
                var last = network.Sent()[network.Sent().Count - 1];
                Assert.AreEqual("10.0.0.7:9100", last.Key);
                Assert.AreEqual(Addresses.Stinger, last.Value.Address);
            }
        }

        [Test]
        public void AFourthRedirectInARowIsNotFollowedAndTheErrorNamesTheLoop()
        {
            var network = new FakeNetwork();
            network.Nodes["10.0.0.1:9000"] = hello => Elsewhere("arena-9", "10.0.0.2", 9000);
            network.Nodes["10.0.0.2:9000"] = hello => Elsewhere("arena-9", "10.0.0.1", 9000);
            using (var client = new AdaptiveClient("10.0.0.1", 9000, "loop-test", session: "arena-9", connect: network.Connect))
            {
                var errors = new List<ServerError>();
                int redirects = 0;
                client.ErrorReceived += errors.Add;
                client.Redirected += r => redirects++;
                client.Hello();
                Assert.IsTrue(DispatchUntil(client, () => errors.Count > 0), "no error after a redirect loop");
                Assert.AreEqual(3, redirects);
                // The first hello and one per redirect followed: 1 + 3, alternating; the 4th redirect is not followed.
                var nodes = network.Hellos().ConvertAll(pair => pair.Key);
                Assert.AreEqual("10.0.0.1:9000 10.0.0.2:9000 10.0.0.1:9000 10.0.0.2:9000", string.Join(" ", nodes.ToArray()));
                Assert.AreEqual(1, errors.Count);
                Assert.AreEqual("client_redirect_loop", errors[0].Code);
                Assert.IsTrue(errors[0].Message.Contains("more than 3 times") &&
                              errors[0].Message.Contains("udp://10.0.0.1:9000 -> udp://10.0.0.2:9000 -> udp://10.0.0.1:9000 -> udp://10.0.0.2:9000 -> udp://10.0.0.1:9000"),
                              errors[0].Message);
                Assert.AreEqual(errors[0].Message, client.RedirectFailure.Message);
                Assert.IsNull(client.Welcome);
                Assert.AreEqual(4, network.Links.Count);

                // A new hello starts a new run (as the Python client's hello() does).
                client.Hello();
                Assert.IsTrue(DispatchUntil(client, () => errors.Count > 1));
                Assert.AreEqual(8, network.Hellos().Count);
            }
        }

        [Test]
        public void ThreeRedirectsInARowAreFollowed()
        {
            var network = new FakeNetwork();
            network.Nodes["10.0.0.1:9000"] = hello => Elsewhere("s", "10.0.0.2", 9000);
            network.Nodes["10.0.0.2:9000"] = hello => Elsewhere("s", "10.0.0.3", 9000);
            network.Nodes["10.0.0.3:9000"] = hello => Elsewhere("s", "10.0.0.4", 9000);
            network.Nodes["10.0.0.4:9000"] = hello => WelcomeTo(hello, 0);
            using (var client = new AdaptiveClient("10.0.0.1", 9000, "three-test", session: "s", connect: network.Connect))
            {
                client.Hello();
                Assert.IsTrue(DispatchUntil(client, () => client.Welcome != null));
                Assert.AreEqual("10.0.0.4", client.Host);
                Assert.IsNull(client.RedirectFailure);
                Assert.AreEqual(0, client.Welcome.AudioTcpPort); // that node has no TCP audio stream: the welcome says so
            }
        }

        [Test]
        public void ARedirectWithABadArgumentIsRefusedWithAClearErrorAndNothingChanges()
        {
            var bad = new Dictionary<string, OscMessage>
            {
                { "'osc_port' is 70000 (allowed: an integer from 1 to 65535)", Elsewhere("arena-9", "10.0.0.7", 70000) },
                { "'osc_port' is 0 (allowed: an integer from 1 to 65535)", Elsewhere("arena-9", "10.0.0.7", 0) },
                { "'zmq_control_port' is -1 (allowed: an integer from 0 to 65535, 0: none)", Elsewhere("arena-9", "10.0.0.7", 9100, -1) },
                { "'audio_tcp_port' is 65536 (allowed: an integer from 0 to 65535, 0: none)", Elsewhere("arena-9", "10.0.0.7", 9100, 0, 65536) },
                { "'osc_port' is of type s (allowed: an integer, i)",
                  new OscMessage(Addresses.SessionElsewhere, "arena-9", "10.0.0.7", "9100", 0, 0) },
                { "'host' is of type i (allowed: a string, s)", new OscMessage(Addresses.SessionElsewhere, "arena-9", 7, 9100, 0, 0) },
                { "'audio_tcp_port' is of type f (allowed: an integer, i)",
                  new OscMessage(Addresses.SessionElsewhere, "arena-9", "10.0.0.7", 9100, 0, 9101f) },
                { "has 4 arguments ,ssii (allowed: 5, ,ssiii", new OscMessage(Addresses.SessionElsewhere, "arena-9", "10.0.0.7", 9100, 0) },
                { "'host' is '' (allowed:", Elsewhere("arena-9", "", 9100) },
                { "'session_id' is 'arena 9!' (allowed: 1 to 32 letters, digits, _ and -)", Elsewhere("arena 9!", "10.0.0.7", 9100) },
                { "'session_id' is '' (allowed:", Elsewhere("", "10.0.0.7", 9100) },
                { "cannot open a link to udp://nowhere.invalid:9100", Elsewhere("arena-9", "nowhere.invalid", 9100) },
            };
            foreach (var pair in bad)
            {
                var network = new FakeNetwork();
                var answer = pair.Value;
                network.Nodes["10.0.0.1:9000"] = hello => answer;
                using (var client = new AdaptiveClient("10.0.0.1", 9000, "bad-redirect-test", session: "arena-9", connect: network.Connect))
                {
                    var errors = new List<ServerError>();
                    int redirects = 0;
                    client.ErrorReceived += errors.Add;
                    client.Redirected += r => redirects++;
                    int replyPort = client.ReplyPort;
                    client.Hello();
                    Assert.IsTrue(DispatchUntil(client, () => errors.Count > 0), "no error for " + pair.Key);
                    Assert.AreEqual("client_bad_redirect", errors[0].Code, pair.Key);
                    Assert.IsTrue(errors[0].Message.Contains(pair.Key), "'" + errors[0].Message + "' does not say " + pair.Key);
                    Assert.IsTrue(errors[0].Message.Contains("not followed (still udp://10.0.0.1:9000, session 'arena-9')"), errors[0].Message);
                    Assert.AreEqual(0, redirects, pair.Key);
                    Assert.AreEqual("10.0.0.1", client.Host);
                    Assert.AreEqual(9000, client.Port);
                    Assert.AreEqual("arena-9", client.Session);
                    Assert.AreEqual(replyPort, client.ReplyPort);
                    Assert.IsNull(client.RedirectedFrom);
                    Assert.IsNull(client.RedirectFailure);
                    Assert.AreEqual(1, network.Links.Count, pair.Key);
                    Assert.IsFalse(network.Links[0].Disposed, pair.Key);
                    Assert.AreEqual(1, network.Hellos().Count, pair.Key);
                }
            }
        }

        [Test]
        public void ASessionElsewhereAfterTheWelcomeIsIgnored()
        {
            var network = new FakeNetwork();
            int hellos = 0;
            network.Nodes["10.0.0.1:9000"] = hello => ++hellos == 1 ? WelcomeTo(hello, 9001) : Elsewhere("x", "10.0.0.9", 9000);
            using (var client = new AdaptiveClient("10.0.0.1", 9000, "late-test", session: "x", connect: network.Connect))
            {
                var errors = new List<ServerError>();
                client.ErrorReceived += errors.Add;
                client.Hello();
                Assert.IsTrue(DispatchUntil(client, () => client.Welcome != null));
                // Said again without a Hello(): the retry path a lost datagram takes, which keeps the welcome.
                network.Links[0].Send(OscCodec.Encode(Addresses.Hello, client.ReplyPort, 48000, 2, "s16", "late-test", "", "", "", "x"));
                Assert.IsTrue(DispatchUntil(client, () => errors.Count > 0));
                Assert.AreEqual("client_bad_redirect", errors[0].Code);
                Assert.IsTrue(errors[0].Message.Contains("after the welcome"), errors[0].Message);
                Assert.AreEqual("10.0.0.1", client.Host);
                Assert.AreEqual(1, network.Links.Count);
            }
        }
    }
}
