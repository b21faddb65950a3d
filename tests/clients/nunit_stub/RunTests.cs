// Runs every [Test] method of every [TestFixture] class in this program (the NUnit stand-in's runner) and
// prints one JSON line per test: {"kind":"nunit","test":"Class.Method","passed":true|false,"message":"..."}.
using System;
using System.Linq;
using System.Reflection;
using NUnit.Framework;

static class RunTests
{
    static string Quote(string s)
    {
        return "\"" + (s ?? "").Replace("\\", "\\\\").Replace("\"", "\\\"").Replace("\n", " ") + "\"";
    }

    static int Main()
    {
        int failed = 0;
        var fixtures = Assembly.GetExecutingAssembly().GetTypes()
            .Where(t => t.GetCustomAttributes(typeof(TestFixtureAttribute), false).Length > 0).OrderBy(t => t.FullName);
        foreach (var fixture in fixtures)
        {
            foreach (var method in fixture.GetMethods().Where(m => m.GetCustomAttributes(typeof(TestAttribute), false).Length > 0))
            {
                string message = "";
                bool passed = true;
                try { method.Invoke(Activator.CreateInstance(fixture), null); }
                catch (TargetInvocationException error) { passed = false; message = error.InnerException.GetType().Name + ": " + error.InnerException.Message; }
                if (!passed) failed++;
                Console.WriteLine("{\"kind\":\"nunit\",\"test\":" + Quote(fixture.Name + "." + method.Name) +
                                  ",\"passed\":" + (passed ? "true" : "false") + ",\"message\":" + Quote(message) + "}");
            }
        }
        return failed == 0 ? 0 : 1;
    }
}
