// Tests for static/js/app_logs.js. Run with `node --test tests/js/`.

import { describe, test } from "node:test";
import assert from "node:assert/strict";

import { AppLogLines, clockTime, lineMatches, pathWithFilters } from "../../static/js/app_logs.js";

function line(at, text = `at ${at}`) {
  return { at: `2024-05-01T12:00:${at}Z`, host: "local", slot: "blue", release: 3, stream: "stdout", text };
}

describe("AppLogLines", () => {
  test("live lines are added as they come", () => {
    const lines = new AppLogLines();
    assert.deepEqual(lines.add([line("01.000000"), line("02.000000")]), [line("01.000000"), line("02.000000")]);
    assert.equal(lines.lastAt, "2024-05-01T12:00:02.000000Z");
  });

  test("a backlog sent again after a reconnection adds only the lines after the newest held", () => {
    const lines = new AppLogLines();
    lines.add([line("01.000000"), line("02.000000")], { backlog: true });
    const fresh = lines.add([line("01.000000"), line("02.000000"), line("02.500000")], { backlog: true });
    assert.deepEqual(fresh, [line("02.500000")]);
    assert.equal(lines.lines.length, 3);
  });

  test("the oldest lines go once there are more than the limit", () => {
    const lines = new AppLogLines({ limit: 2 });
    lines.add([line("01.000000"), line("02.000000"), line("03.000000")]);
    assert.deepEqual(lines.lines.map((held) => held.at.slice(-10)), ["02.000000Z", "03.000000Z"]);
  });

  test("cleared, it holds nothing and takes any backlog", () => {
    const lines = new AppLogLines();
    lines.add([line("05.000000")]);
    lines.clear();
    assert.equal(lines.lastAt, "");
    assert.equal(lines.add([line("01.000000")], { backlog: true }).length, 1);
  });
});

describe("lineMatches", () => {
  test("a search matches ignoring case, and an empty one matches every line", () => {
    assert.equal(lineMatches(line("01", "GET /Orders 500"), "orders"), true);
    assert.equal(lineMatches(line("01", "GET /health 200"), "orders"), false);
    assert.equal(lineMatches(line("01", "anything"), ""), true);
  });
});

describe("pathWithFilters", () => {
  test("the host and search chosen go in the query, empty ones are left out", () => {
    assert.equal(pathWithFilters("/ws/environments/4/logs/"), "/ws/environments/4/logs/");
    assert.equal(pathWithFilters("/ws/environments/4/logs/", { host: "", search: "a b&c" }), "/ws/environments/4/logs/?search=a+b%26c");
    assert.equal(pathWithFilters("/logs.txt", { host: "east", search: "err" }), "/logs.txt?host=east&search=err");
  });
});

describe("clockTime", () => {
  test("a time shows to the millisecond in the reader's zone", () => {
    assert.equal(clockTime("2024-05-01T12:34:56.481516Z", { timeZone: "Europe/Paris" }), "14:34:56.481");
    assert.equal(clockTime("not a time"), "");
  });
});
