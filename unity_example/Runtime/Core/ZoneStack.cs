// Which of the zones the player is inside sets the scene state: the rule of EmotionZone, without Unity.
using System;
using System.Collections.Generic;

namespace Adaptive.Soundtrack
{
    /// <summary>The zones the player is inside, in the order entered. <see cref="Top"/> is the one whose state
    /// plays: the highest priority, the latest entered among equals; null outside every zone. Main thread only.</summary>
    public sealed class ZoneStack<T> where T : class
    {
        readonly List<T> zones = new List<T>();
        readonly Func<T, int> priorityOf;

        /// <param name="priorityOf">a zone's priority (read each time, so it may change while inside).</param>
        public ZoneStack(Func<T, int> priorityOf) { this.priorityOf = priorityOf; }

        public int Count { get { return zones.Count; } }

        /// <summary>The player entered <paramref name="zone"/> (again: it becomes the latest entered).</summary>
        public void Enter(T zone)
        {
            zones.Remove(zone);
            zones.Add(zone);
        }

        /// <summary>The player left <paramref name="zone"/>; false if it was not inside.</summary>
        public bool Exit(T zone) { return zones.Remove(zone); }

        public T Top
        {
            get
            {
                T top = null;
                foreach (var zone in zones)
                    if (top == null || priorityOf(zone) >= priorityOf(top)) top = zone;
                return top;
            }
        }
    }
}
