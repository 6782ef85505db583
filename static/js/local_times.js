// Times on the pages in the reader's own time zone, and named: the server writes each <time>
// in UTC (web/templatetags/times.py), which is right for nobody in particular.
//
// <time datetime="…" data-local-time="date"> gets the local date and time as its text, and
// data-local-time="time" the time alone (the UTC text it had becomes its tooltip);
// <time datetime="…" data-local-title> ("3 min ago") keeps its text and gets the local time as
// its tooltip.

/**
 * A moment as "14 Mar 2025, 14:03:22 CET": date, time to the second, and the zone's name; with
 * `timeOnly`, "14:03:22 CET", for a page that has said the date already.
 */
export function localTimeText(date, { locale, timeZone, timeOnly = false } = {}) {
  const day = timeOnly ? {} : { year: "numeric", month: "short", day: "numeric" };
  return new Intl.DateTimeFormat(locale, {
    ...day,
    hour: "2-digit",
    minute: "2-digit",
    second: "2-digit",
    hourCycle: "h23",
    timeZoneName: "short",
    timeZone,
  }).format(date);
}

/** Rewrite the times under `root`; each only once, so running it again after a swap is safe. */
export function showLocalTimes(root, options = {}) {
  for (const element of root.querySelectorAll("time[data-local-time]")) {
    const date = new Date(element.getAttribute("datetime"));
    const timeOnly = element.getAttribute("data-local-time") === "time";
    element.removeAttribute("data-local-time");
    if (Number.isNaN(date.getTime())) continue;
    element.title = element.textContent.trim();
    element.textContent = localTimeText(date, { ...options, timeOnly });
  }
  for (const element of root.querySelectorAll("time[data-local-title]")) {
    const date = new Date(element.getAttribute("datetime"));
    element.removeAttribute("data-local-title");
    if (!Number.isNaN(date.getTime())) element.title = localTimeText(date, options);
  }
}

// In a page (not under Node's test runner): now, and in whatever htmx swaps in later (the
// dashboard, the runs list and the environment page refresh themselves).
if (typeof document !== "undefined") {
  showLocalTimes(document);
  document.addEventListener("htmx:load", (event) => showLocalTimes(event.target));
}
