// The callback messages of docs/protocol.md ("Messages to client"), as typed values.
// Written from docs/protocol.md: argument order, types and meanings are the protocol table's.
using System;

namespace Adaptive.Soundtrack
{
    /// <summary>Addresses of docs/protocol.md.</summary>
    public static class Addresses
    {
        public const string Hello = "/adaptive/hello";
        public const string Goodbye = "/adaptive/goodbye";
        public const string Retry = "/adaptive/retry";
        public const string SessionElsewhere = "/adaptive/session/elsewhere";
        public const string Scene = "/adaptive/scene";
        public const string Emotion = "/adaptive/emotion";
        public const string EmotionPoint = "/adaptive/emotion/point";
        public const string Intensity = "/adaptive/intensity";
        public const string Location = "/adaptive/location";
        public const string Cue = "/adaptive/cue";
        public const string Stinger = "/adaptive/stinger";
        public const string AudienceVote = "/adaptive/audience/vote";
        public const string Subscribe = "/adaptive/subscribe";
        public const string Unsubscribe = "/adaptive/unsubscribe";
        public const string Ping = "/adaptive/ping";
        public const string Welcome = "/adaptive/welcome";
        public const string Pong = "/adaptive/pong";
        public const string Beat = "/adaptive/beat";
        public const string Bar = "/adaptive/bar";
        public const string CueChange = "/adaptive/cue_change";
        public const string Transition = "/adaptive/transition";
        public const string StingerPlayed = "/adaptive/stinger_played";
        public const string Midi = "/adaptive/midi";
        public const string Error = "/adaptive/error";
    }

    /// <summary>Server time as the protocol carries it: whole seconds and microseconds since the session started.</summary>
    public static class ServerTime
    {
        public static double Seconds(OscMessage message, int secondsIndex)
        {
            return message.GetInt(secondsIndex) + message.GetInt(secondsIndex + 1) / 1e6;
        }
    }

    /// <summary>Answer to hello: the session's clock and where its audio stream is.</summary>
    public sealed class WelcomeInfo
    {
        public int ProtocolVersion;
        public string SessionId;
        public int SampleRateHz;       // frames count at this rate
        public int BlockFrames;
        public double LookaheadMs;
        public int AudioTcpPort;       // 0: no TCP audio stream
        public double ServerTimeSeconds;
        /// <summary>This client's id: the TCP audio stream wants it first on a server with credentials, and
        /// subscribe/unsubscribe/goodbye from another socket carry it ("" from an older server).</summary>
        public string ClientId = "";
        /// <summary>The role granted: "control", "listener" or "audience".</summary>
        public string Role = "";
        /// <summary>Send something (a ping will do) at least this often or the server drops the client.</summary>
        public int LeaseSeconds;

        public static WelcomeInfo From(OscMessage m)
        {
            var welcome = new WelcomeInfo
            {
                ProtocolVersion = m.GetInt(0), SessionId = m.GetString(1), SampleRateHz = m.GetInt(2),
                BlockFrames = m.GetInt(3), LookaheadMs = m.GetNumber(4), AudioTcpPort = m.GetInt(5),
                ServerTimeSeconds = ServerTime.Seconds(m, 6),
            };
            if (m.Args.Length >= 11)
            {
                welcome.ClientId = m.GetString(8);
                welcome.Role = m.GetString(9);
                welcome.LeaseSeconds = m.GetInt(10);
            }
            return welcome;
        }
    }

    /// <summary>Answer to hello from a node of a cluster (docs/cluster.md, docs/protocol.md
    /// /adaptive/session/elsewhere): nothing was joined there; the session lives on the node named here, and
    /// the client says the same hello to it with <see cref="SessionId"/> (AdaptiveClient does it itself).</summary>
    public sealed class SessionElsewhereInfo
    {
        /// <summary>Longest host name (a DNS name's limit, RFC 1035; bridge/protocol.py HOST_CHARS).</summary>
        public const int MaxHostChars = 253;
        /// <summary>Longest session id (bridge/protocol.py SESSION_ID_CHARS).</summary>
        public const int MaxSessionIdChars = 32;

        /// <summary>The session asked for (for "new": the id chosen for it), 1 to 32 letters, digits, _ and -.</summary>
        public string SessionId;
        /// <summary>The host (address or name) of the node that hosts it.</summary>
        public string Host;
        /// <summary>That node's OSC UDP port, 1..65535.</summary>
        public int OscPort;
        /// <summary>That node's ZeroMQ ROUTER port, 0..65535 (0: it has none).</summary>
        public int ZmqControlPort;
        /// <summary>That node's TCP audio port, 0..65535 (0: it has none; the welcome says it again).</summary>
        public int AudioTcpPort;
        /// <summary>The node that sent the redirect: its host and OSC port, as the client knew them.</summary>
        public string FromHost;
        public int FromOscPort;

        static readonly string[] Names = { "session_id", "host", "osc_port", "zmq_control_port", "audio_tcp_port" };

        /// <summary>The redirect in <paramref name="m"/> (received from <paramref name="fromHost"/>:<paramref
        /// name="fromOscPort"/>), or null and, in <paramref name="problem"/>, a sentence naming the argument
        /// that is wrong and what is allowed (the protocol table's ranges).</summary>
        public static SessionElsewhereInfo TryFrom(OscMessage m, string fromHost, int fromOscPort, out string problem)
        {
            problem = null;
            if (m.Args.Length != Names.Length)
            {
                problem = m.Address + " has " + m.Args.Length + " arguments ," + m.TypeTags + " (allowed: 5, ,ssiii: " +
                          string.Join(" ", Names) + ")";
                return null;
            }
            for (int i = 0; i < Names.Length; i++)
            {
                bool isString = i < 2;
                if (isString ? m.Args[i] is string : m.Args[i] is int) continue;
                problem = m.Address + " argument '" + Names[i] + "' is of type " + OscCodec.TypeTagOf(m.Args[i]) +
                          " (allowed: " + (isString ? "a string, s" : "an integer, i") + ")";
                return null;
            }
            var info = new SessionElsewhereInfo
            {
                SessionId = (string)m.Args[0], Host = (string)m.Args[1], OscPort = (int)m.Args[2],
                ZmqControlPort = (int)m.Args[3], AudioTcpPort = (int)m.Args[4], FromHost = fromHost, FromOscPort = fromOscPort,
            };
            if (!IsSessionId(info.SessionId))
                problem = m.Address + " argument 'session_id' is '" + info.SessionId + "' (allowed: 1 to " + MaxSessionIdChars +
                          " letters, digits, _ and -)";
            else if (info.Host.Length == 0 || info.Host.Length > MaxHostChars || info.Host.Trim() != info.Host)
                problem = m.Address + " argument 'host' is '" + info.Host + "' (allowed: an address or name of 1 to " +
                          MaxHostChars + " characters, no surrounding spaces)";
            else problem = PortProblem(m.Address, "osc_port", info.OscPort, 1) ?? PortProblem(m.Address, "zmq_control_port", info.ZmqControlPort, 0)
                           ?? PortProblem(m.Address, "audio_tcp_port", info.AudioTcpPort, 0);
            return problem == null ? info : null;
        }

        static string PortProblem(string address, string name, int port, int lowest)
        {
            if (port >= lowest && port <= 65535) return null;
            return address + " argument '" + name + "' is " + port + " (allowed: an integer from " + lowest + " to 65535" +
                   (lowest == 0 ? ", 0: none" : "") + ")";
        }

        /// <summary>Whether <paramref name="s"/> is a session id: 1 to 32 of A-Z a-z 0-9 _ - (bridge/sessions.py).</summary>
        public static bool IsSessionId(string s)
        {
            if (string.IsNullOrEmpty(s) || s.Length > MaxSessionIdChars) return false;
            foreach (char c in s)
                if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_' || c == '-')) return false;
            return true;
        }

        public override string ToString()
        {
            return "session '" + SessionId + "' on udp://" + Host + ":" + OscPort + " (zmq " + ZmqControlPort + ", audio tcp " +
                   AudioTcpPort + "; redirected by udp://" + FromHost + ":" + FromOscPort + ")";
        }
    }

    /// <summary>What every callback carries: the session frame it happens on and its server time.</summary>
    public abstract class TimedEvent
    {
        public long Frame;
        public double ServerTimeSeconds;
        /// <summary>Local <see cref="ClockSync.Now"/> seconds at which the datagram arrived.</summary>
        public double ArrivalLocalSeconds;

        protected void ReadTime(OscMessage m)
        {
            Frame = m.GetInt(0);
            ServerTimeSeconds = ServerTime.Seconds(m, 1);
        }
    }

    public sealed class BeatInfo : TimedEvent
    {
        public string Cue;
        public int BarIndex;    // bar since the cue started, from 0
        public int BeatInBar;   // from 1
        public double Bpm;

        public static BeatInfo From(OscMessage m)
        {
            var e = new BeatInfo { Cue = m.GetString(3), BarIndex = m.GetInt(4), BeatInBar = m.GetInt(5), Bpm = m.GetNumber(6) };
            e.ReadTime(m);
            return e;
        }
    }

    public sealed class BarInfo : TimedEvent
    {
        public string Cue;
        public int BarIndex;

        public static BarInfo From(OscMessage m)
        {
            var e = new BarInfo { Cue = m.GetString(3), BarIndex = m.GetInt(4) };
            e.ReadTime(m);
            return e;
        }
    }

    public sealed class CueChangeInfo : TimedEvent
    {
        public string Cue;
        public string Previous; // "" at the start

        public static CueChangeInfo From(OscMessage m)
        {
            var e = new CueChangeInfo { Cue = m.GetString(3), Previous = m.GetString(4) };
            e.ReadTime(m);
            return e;
        }
    }

    public sealed class TransitionInfo : TimedEvent
    {
        public string Phase; // "start" or "end"
        public string FromCue;
        public string ToCue;

        public static TransitionInfo From(OscMessage m)
        {
            var e = new TransitionInfo { Phase = m.GetString(3), FromCue = m.GetString(4), ToCue = m.GetString(5) };
            e.ReadTime(m);
            return e;
        }
    }

    public sealed class StingerInfo : TimedEvent
    {
        public string Stinger;

        public static StingerInfo From(OscMessage m)
        {
            var e = new StingerInfo { Stinger = m.GetString(3) };
            e.ReadTime(m);
            return e;
        }
    }

    public sealed class MidiInfo : TimedEvent
    {
        public int Status;  // 0x80 note off, 0x90 note on, ...; low nibble = channel
        public int Data1;
        public int Data2;
        public string Part;

        public static MidiInfo From(OscMessage m)
        {
            var e = new MidiInfo { Status = m.GetInt(3), Data1 = m.GetInt(4), Data2 = m.GetInt(5), Part = m.GetString(6) };
            e.ReadTime(m);
            return e;
        }
    }

    /// <summary>The server rejected a message from this client (code and sentence), or the client could
    /// not decode a datagram from the server (code "client_decode").</summary>
    public sealed class ServerError
    {
        public string Code;
        public string Message;

        public static ServerError From(OscMessage m)
        {
            return new ServerError { Code = m.GetString(0), Message = m.GetString(1) };
        }
    }
}
