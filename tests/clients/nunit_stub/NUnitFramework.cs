// A stand-in for the part of NUnit's API that unity_example/Tests/Editor uses (attributes and asserts, with
// NUnit 3's names and meanings), so those tests compile and run here under Mono where NUnit is not installed
// (where Debian's NUnit 2.6 is, tests/clients/test_unity_console.py runs them with it instead).
// Unity's Test Framework runs the same files against the real nunit.framework.dll.
using System;

namespace NUnit.Framework
{
    [AttributeUsage(AttributeTargets.Class)] public sealed class TestFixtureAttribute : Attribute { }
    [AttributeUsage(AttributeTargets.Method)] public sealed class TestAttribute : Attribute { }
    public delegate void TestDelegate();

    public class AssertionException : Exception { public AssertionException(string message) : base(message) { } }

    public static class Assert
    {
        static void Fail(string what, string message)
        {
            throw new AssertionException(string.IsNullOrEmpty(message) ? what : message + ": " + what);
        }

        static bool IsNumber(object value)
        {
            return value is int || value is long || value is float || value is double || value is short || value is byte;
        }

        public static void AreEqual(object expected, object actual, string message = null)
        {
            bool same = IsNumber(expected) && IsNumber(actual)
                ? Convert.ToDouble(expected) == Convert.ToDouble(actual)
                : Equals(expected, actual);
            if (!same) Fail("expected " + expected + " but was " + actual, message);
        }

        public static void AreEqual(double expected, double actual, double delta, string message = null)
        {
            if (Math.Abs(expected - actual) > delta) Fail("expected " + expected + " +/- " + delta + " but was " + actual, message);
        }

        public static void IsTrue(bool condition, string message = null) { if (!condition) Fail("expected true", message); }
        public static void IsFalse(bool condition, string message = null) { if (condition) Fail("expected false", message); }
        public static void IsNull(object value, string message = null) { if (value != null) Fail("expected null but was " + value, message); }

        public static void Greater(double arg1, double arg2, string message = null) { if (!(arg1 > arg2)) Fail(arg1 + " is not greater than " + arg2, message); }
        public static void Less(double arg1, double arg2, string message = null) { if (!(arg1 < arg2)) Fail(arg1 + " is not less than " + arg2, message); }
        public static void LessOrEqual(double arg1, double arg2, string message = null) { if (!(arg1 <= arg2)) Fail(arg1 + " is not at most " + arg2, message); }

        public static T Throws<T>(TestDelegate code, string message = null) where T : Exception
        {
            try { code(); }
            catch (T expected) { return expected; }
            catch (Exception other) { Fail("expected " + typeof(T).Name + " but got " + other.GetType().Name, message); }
            Fail("expected " + typeof(T).Name + " but nothing was thrown", message);
            return null;
        }
    }
}
