// The datagram link between the client and one node of the server: a UDP socket in a game, a fake in the
// Edit Mode tests (Tests/Editor/RedirectTests.cs). AdaptiveClient opens one per node it talks to: a
// session_elsewhere answer (docs/cluster.md) closes the link to the node that sent it and opens one to the
// node it names.
using System;
using System.Net;
using System.Net.Sockets;

namespace Adaptive.Soundtrack
{
    /// <summary>A datagram link to one node: sends to it, receives what comes back to <see cref="LocalPort"/>.
    /// <see cref="Send"/> may be called from any thread, <see cref="Receive"/> from one (the client's
    /// receive thread). After <see cref="IDisposable.Dispose"/>, both may throw ObjectDisposedException.</summary>
    public interface IOscTransport : IDisposable
    {
        /// <summary>The local port replies arrive at (hello's reply_port).</summary>
        int LocalPort { get; }

        /// <summary>Sends one datagram to the node.</summary>
        void Send(byte[] datagram);

        /// <summary>The next datagram received, or null when none came within a short wait (at most about
        /// 0.2 s, so the receive thread can notice it should stop).</summary>
        byte[] Receive();
    }

    /// <summary>The UDP link of a game: a socket bound to loopback for a node on loopback (a loopback server
    /// answers there), else to every interface, any free port.</summary>
    public sealed class UdpOscTransport : IOscTransport
    {
        /// <summary>How long <see cref="Receive"/> waits for a datagram, milliseconds.</summary>
        public const int ReceiveTimeoutMs = 200;

        readonly UdpClient udp;
        readonly IPEndPoint node;

        /// <param name="host">the node's host: an IPv4 address or a name (resolved here, to IPv4).</param>
        /// <param name="port">the node's OSC UDP port, 1..65535.</param>
        /// <exception cref="ArgumentException">no IPv4 address for the host, or a port out of range.</exception>
        /// <exception cref="SocketException">the name cannot be resolved, or no local port can be bound.</exception>
        public UdpOscTransport(string host, int port)
        {
            if (port < 1 || port > 65535) throw new ArgumentException("port " + port + " is out of range (allowed: 1 to 65535)");
            IPAddress address;
            if (!IPAddress.TryParse(host, out address))
            {
                address = Array.Find(Dns.GetHostAddresses(host), a => a.AddressFamily == AddressFamily.InterNetwork);
                if (address == null) throw new ArgumentException("no IPv4 address for host '" + host + "'");
            }
            node = new IPEndPoint(address, port);
            // Loopback servers answer on loopback; a remote one needs a reachable interface.
            var local = IPAddress.IsLoopback(address) ? IPAddress.Loopback : IPAddress.Any;
            udp = new UdpClient(new IPEndPoint(local, 0));
            udp.Client.ReceiveTimeout = ReceiveTimeoutMs;
        }

        /// <summary>Opens a link to a node: the default connect function of <see cref="AdaptiveClient"/>.</summary>
        public static IOscTransport Connect(string host, int port) { return new UdpOscTransport(host, port); }

        public int LocalPort { get { return ((IPEndPoint)udp.Client.LocalEndPoint).Port; } }

        public void Send(byte[] datagram) { udp.Send(datagram, datagram.Length, node); }

        public byte[] Receive()
        {
            var from = new IPEndPoint(IPAddress.Any, 0);
            try { return udp.Receive(ref from); }
            catch (SocketException) { return null; } // timeout, or ICMP port unreachable: keep listening
        }

        public void Dispose() { udp.Close(); }
    }
}
