// A stand-in for the parts of the UnityEngine API that unity_example/Runtime and Samples~ use, with Unity's
// signatures, so the tests can type-check those scripts with Mono's compiler. It proves the scripts are valid
// C# against these signatures, not that Unity behaves as the scripts expect. Nothing here runs.
using System;
using System.Collections;

namespace UnityEngine
{
    public class Object { public string name; }
    public class GameObject : Object
    {
        public T AddComponent<T>() where T : Component { return null; }
    }
    public class Component : Object
    {
        public GameObject gameObject;
        public Transform transform;
        public T GetComponent<T>() { return default(T); }
        public bool CompareTag(string tag) { return false; }
    }
    public class Behaviour : Component { public bool enabled; }
    public class MonoBehaviour : Behaviour
    {
        public Coroutine StartCoroutine(IEnumerator routine) { return null; }
    }
    public class Coroutine { }
    public class Transform : Component { public Vector3 localScale; }
    public struct Vector3
    {
        public float x, y, z;
        public static Vector3 operator *(Vector3 a, float d) { return a; }
    }
    public class Collider : Component { public bool isTrigger; }
    public class Collider2D : Behaviour { public bool isTrigger; }
    public class AudioClip : Object { }
    public class AudioSource : Behaviour
    {
        public AudioClip clip;
        public float spatialBlend;
        public bool loop;
        public bool isPlaying { get { return false; } }
        public void Play() { }
        public void PlayScheduled(double time) { }
    }
    public sealed class AudioSettings
    {
        public static double dspTime { get { return 0; } }
        public static int outputSampleRate { get { return 48000; } }
        public static void GetDSPBufferSize(out int bufferLength, out int numBuffers) { bufferLength = 1024; numBuffers = 4; }
    }
    public static class Debug
    {
        public static void Log(object message) { }
        public static void Log(object message, Object context) { }
        public static void LogWarning(object message) { }
        public static void LogWarning(object message, Object context) { }
        public static void LogError(object message) { }
        public static void LogError(object message, Object context) { }
    }
    public static class Mathf
    {
        public static float Clamp01(float value) { return value; }
        public static int CeilToInt(float f) { return (int)f; }
        public static float Max(float a, float b) { return a; }
        public static float Lerp(float a, float b, float t) { return a; }
    }
    public static class Time { public static float deltaTime { get { return 0; } } }
    public sealed class HeaderAttribute : Attribute { public HeaderAttribute(string header) { } }
    public sealed class TooltipAttribute : Attribute { public TooltipAttribute(string tooltip) { } }
    public sealed class RangeAttribute : Attribute { public RangeAttribute(float min, float max) { } }
    public sealed class SerializeField : Attribute { }
    public sealed class DisallowMultipleComponent : Attribute { }
    public sealed class AddComponentMenu : Attribute { public AddComponentMenu(string menuName) { } }
    public sealed class RequireComponent : Attribute { public RequireComponent(Type requiredComponent) { } }
}

namespace UnityEngine.Events
{
    public class UnityEventBase { }
    public class UnityEvent : UnityEventBase { public void Invoke() { } public void AddListener(Action call) { } }
    public class UnityEvent<T0> : UnityEventBase { public void Invoke(T0 arg0) { } public void AddListener(Action<T0> call) { } }
    public class UnityEvent<T0, T1> : UnityEventBase { public void Invoke(T0 arg0, T1 arg1) { } public void AddListener(Action<T0, T1> call) { } }
}
