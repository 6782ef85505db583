// Tests for static/js/local_times.js. Run with `node --test tests/js/`.

import { describe, test } from "node:test";
import assert from "node:assert/strict";

import { localTimeText, showLocalTimes } from "../../static/js/local_times.js";

const PARIS = { locale: "en-GB", timeZone: "Europe/Paris" };

// A <time> element with the attributes the server writes, and a root that finds them.
class FakeTime {
  constructor(attributes, text) {
    this.attributes = { ...attributes };
    this.textContent = text;
    this.title = "";
  }
  getAttribute(name) {
    return this.attributes[name] ?? null;
  }
  removeAttribute(name) {
    delete this.attributes[name];
  }
}

function rootOf(...times) {
  return {
    querySelectorAll(selector) {
      const attribute = selector.match(/^time\[([\w-]+)\]$/)[1];
      return times.filter((time) => attribute in time.attributes);
    },
  };
}

describe("localTimeText", () => {
  test("a moment is shown in the reader's zone, to the second, with the zone named", () => {
    const moment = new Date("2025-03-14T13:03:22Z");
    assert.equal(localTimeText(moment, PARIS), "14 Mar 2025, 14:03:22 CET");
    assert.equal(localTimeText(moment, { locale: "en-US", timeZone: "America/New_York" }), "Mar 14, 2025, 09:03:22 EDT");
  });

  test("a time of day alone still names its zone", () => {
    const moment = new Date("2025-03-14T13:03:22Z");
    assert.equal(localTimeText(moment, { ...PARIS, timeOnly: true }), "14:03:22 CET");
  });
});

describe("showLocalTimes", () => {
  test("a time written in UTC is shown in the local zone, the UTC text kept as its tooltip", () => {
    const time = new FakeTime({ datetime: "2025-03-14T13:03:22Z", "data-local-time": "date" }, "2025-03-14 13:03:22 UTC");
    showLocalTimes(rootOf(time), PARIS);
    assert.equal(time.textContent, "14 Mar 2025, 14:03:22 CET");
    assert.equal(time.title, "2025-03-14 13:03:22 UTC");
  });

  test("a time the server wrote without its date is shown without it", () => {
    const time = new FakeTime({ datetime: "2025-03-14T13:03:22Z", "data-local-time": "time" }, "13:03:22 UTC");
    showLocalTimes(rootOf(time), PARIS);
    assert.equal(time.textContent, "14:03:22 CET");
  });

  test("an age keeps its words and gets the local time as its tooltip", () => {
    const age = new FakeTime({ datetime: "2025-03-14T13:03:22Z", "data-local-title": "" }, "3 min ago");
    showLocalTimes(rootOf(age), PARIS);
    assert.equal(age.textContent, "3 min ago");
    assert.equal(age.title, "14 Mar 2025, 14:03:22 CET");
  });

  test("running it again changes nothing: each time is rewritten once", () => {
    const time = new FakeTime({ datetime: "2025-03-14T13:03:22Z", "data-local-time": "date" }, "2025-03-14 13:03:22 UTC");
    const root = rootOf(time);
    showLocalTimes(root, PARIS);
    showLocalTimes(root, { locale: "en-GB", timeZone: "Asia/Tokyo" });
    assert.equal(time.textContent, "14 Mar 2025, 14:03:22 CET");
    assert.equal(time.title, "2025-03-14 13:03:22 UTC");
  });

  test("a time the browser cannot read is left as the server wrote it", () => {
    const time = new FakeTime({ datetime: "yesterday", "data-local-time": "date" }, "2025-03-14 13:03:22 UTC");
    showLocalTimes(rootOf(time), PARIS);
    assert.equal(time.textContent, "2025-03-14 13:03:22 UTC");
  });
});
