// OSC 1.0 codec in plain C#: no Unity, no external dependency.
// Source: the Open Sound Control 1.0 specification (opensoundcontrol.stanford.edu/spec-1_0.html):
// big-endian int32/float32/float64, strings NUL-terminated and padded to a multiple of 4 bytes,
// a type-tag string starting with ','. Only single messages: the adaptive protocol never uses bundles
// (docs/protocol.md, "Transports").
using System;
using System.Collections.Generic;
using System.Text;

namespace Adaptive.Soundtrack
{
    /// <summary>A bad OSC datagram: the message says what was wrong.</summary>
    public class OscFormatException : Exception
    {
        public OscFormatException(string message) : base(message) { }
    }

    /// <summary>One OSC message: an address and its arguments (int, float, double or string).</summary>
    public sealed class OscMessage
    {
        public readonly string Address;
        public readonly object[] Args;

        public OscMessage(string address, params object[] args)
        {
            Address = address;
            Args = args ?? new object[0];
        }

        /// <summary>The OSC type tags of the arguments, without the leading ',' (e.g. "sfs").</summary>
        public string TypeTags
        {
            get
            {
                var tags = new StringBuilder(Args.Length);
                foreach (var arg in Args) tags.Append(OscCodec.TypeTagOf(arg));
                return tags.ToString();
            }
        }

        public int GetInt(int index) { return Expect<int>(index, "i"); }
        public string GetString(int index) { return Expect<string>(index, "s"); }

        /// <summary>A number argument as a double: accepts f, d and i, as the server does.</summary>
        public double GetNumber(int index)
        {
            CheckIndex(index);
            var value = Args[index];
            if (value is float) return (float)value;
            if (value is double) return (double)value;
            if (value is int) return (int)value;
            throw new OscFormatException(Address + " argument " + index + " must be a number (f, d or i), got " +
                                         OscCodec.TypeTagOf(value));
        }

        T Expect<T>(int index, string tag)
        {
            CheckIndex(index);
            if (!(Args[index] is T))
                throw new OscFormatException(Address + " argument " + index + " must be of type " + tag + ", got " +
                                             OscCodec.TypeTagOf(Args[index]));
            return (T)Args[index];
        }

        void CheckIndex(int index)
        {
            if (index >= Args.Length)
                throw new OscFormatException(Address + " has " + Args.Length + " arguments (,"
                                             + TypeTags + "), argument " + index + " is missing");
        }

        public override string ToString() { return Address + " ," + TypeTags; }
    }

    /// <summary>Encodes and decodes OSC 1.0 messages with argument types i, f, d, s.</summary>
    public static class OscCodec
    {
        /// <summary>Largest datagram sent or accepted, bytes (bridge/protocol.py MAX_DATAGRAM_BYTES).</summary>
        public const int MaxDatagramBytes = 1400;

        static readonly Encoding Utf8 = new UTF8Encoding(false, true);

        public static char TypeTagOf(object value)
        {
            if (value is int) return 'i';
            if (value is float) return 'f';
            if (value is double) return 'd';
            if (value is string) return 's';
            throw new ArgumentException("OSC arguments must be int, float, double or string, got " +
                                        (value == null ? "null" : value.GetType().Name));
        }

        static int Padded(int length) { return (length + 4) & ~3; } // NUL-terminated, padded to 4

        /// <summary>The datagram of one message.</summary>
        /// <exception cref="ArgumentException">an unsupported argument type, or a datagram over 1400 bytes.</exception>
        public static byte[] Encode(string address, params object[] args)
        {
            if (string.IsNullOrEmpty(address) || address[0] != '/')
                throw new ArgumentException("an OSC address starts with '/', got '" + address + "'");
            var tags = new StringBuilder(",");
            int length = Padded(Utf8.GetByteCount(address));
            foreach (var arg in args)
            {
                char tag = TypeTagOf(arg);
                tags.Append(tag);
                length += tag == 's' ? Padded(Utf8.GetByteCount((string)arg)) : tag == 'd' ? 8 : 4;
            }
            length += Padded(tags.Length);
            if (length > MaxDatagramBytes)
                throw new ArgumentException(address + " would be " + length + " bytes (allowed: at most " +
                                            MaxDatagramBytes + ")");
            var data = new byte[length];
            int offset = WriteString(data, 0, address);
            offset = WriteString(data, offset, tags.ToString());
            foreach (var arg in args)
            {
                if (arg is int) offset = WriteInt32(data, offset, (int)arg);
                else if (arg is float) offset = WriteInt32(data, offset, BitConverter.ToInt32(BitConverter.GetBytes((float)arg), 0));
                else if (arg is double) offset = WriteInt64(data, offset, BitConverter.DoubleToInt64Bits((double)arg));
                else offset = WriteString(data, offset, (string)arg);
            }
            return data;
        }

        /// <summary>Parses one datagram (a message, not a bundle).</summary>
        /// <exception cref="OscFormatException">not OSC, a bundle, an unsupported type tag, or truncated.</exception>
        public static OscMessage Decode(byte[] data, int length)
        {
            if (length > MaxDatagramBytes)
                throw new OscFormatException("datagram of " + length + " bytes (allowed: at most " + MaxDatagramBytes + ")");
            if (length >= 8 && data[0] == '#')
                throw new OscFormatException("OSC bundles are not used by this protocol (allowed: single messages)");
            int offset = 0;
            string address = ReadString(data, length, ref offset, "address");
            if (address.Length == 0 || address[0] != '/')
                throw new OscFormatException("not an OSC message: the address must start with '/'");
            if (offset >= length) return new OscMessage(address); // OSC 1.0 allows a missing type-tag string
            string tags = ReadString(data, length, ref offset, "type tags");
            if (tags.Length == 0 || tags[0] != ',')
                throw new OscFormatException(address + ": type tags must start with ','");
            var args = new List<object>(tags.Length - 1);
            for (int i = 1; i < tags.Length; i++)
            {
                switch (tags[i])
                {
                    case 'i': args.Add(ReadInt32(data, length, ref offset, address)); break;
                    case 'f': args.Add(BitConverter.ToSingle(BitConverter.GetBytes(ReadInt32(data, length, ref offset, address)), 0)); break;
                    case 'd': args.Add(BitConverter.Int64BitsToDouble(ReadInt64(data, length, ref offset, address))); break;
                    case 's': args.Add(ReadString(data, length, ref offset, address + " argument " + (i - 1))); break;
                    default:
                        throw new OscFormatException(address + ": OSC type tag '" + tags[i] + "' is not supported (allowed: i, f, d, s)");
                }
            }
            if (offset != length)
                throw new OscFormatException(address + ": " + (length - offset) + " bytes left after the arguments ,"
                                             + tags.Substring(1));
            return new OscMessage(address, args.ToArray());
        }

        static int WriteString(byte[] data, int offset, string value)
        {
            int count = Utf8.GetBytes(value, 0, value.Length, data, offset);
            return offset + Padded(count); // the array is zeroed: NUL and padding are already there
        }

        static int WriteInt32(byte[] data, int offset, int value)
        {
            data[offset] = (byte)(value >> 24);
            data[offset + 1] = (byte)(value >> 16);
            data[offset + 2] = (byte)(value >> 8);
            data[offset + 3] = (byte)value;
            return offset + 4;
        }

        static int WriteInt64(byte[] data, int offset, long value)
        {
            WriteInt32(data, offset, (int)(value >> 32));
            return WriteInt32(data, offset + 4, (int)value);
        }

        static int ReadInt32(byte[] data, int length, ref int offset, string what)
        {
            if (offset + 4 > length) throw new OscFormatException(what + ": truncated (an int32/float32 needs 4 bytes)");
            int value = (data[offset] << 24) | (data[offset + 1] << 16) | (data[offset + 2] << 8) | data[offset + 3];
            offset += 4;
            return value;
        }

        static long ReadInt64(byte[] data, int length, ref int offset, string what)
        {
            if (offset + 8 > length) throw new OscFormatException(what + ": truncated (a float64 needs 8 bytes)");
            long high = (uint)ReadInt32(data, length, ref offset, what);
            long low = (uint)ReadInt32(data, length, ref offset, what);
            return (high << 32) | low;
        }

        static string ReadString(byte[] data, int length, ref int offset, string what)
        {
            int end = Array.IndexOf(data, (byte)0, offset, Math.Max(0, length - offset));
            if (end < 0) throw new OscFormatException(what + ": string not NUL-terminated (truncated?)");
            string value;
            try { value = Utf8.GetString(data, offset, end - offset); }
            catch (DecoderFallbackException) { throw new OscFormatException(what + ": string is not UTF-8"); }
            int next = offset + Padded(end - offset);
            if (next > length) throw new OscFormatException(what + ": string padding truncated");
            offset = next;
            return value;
        }
    }
}
