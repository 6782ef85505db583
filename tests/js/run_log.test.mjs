// Tests for static/js/run_log.js. Run with `node --test tests/js/`.
//
// The pure parts are tested directly. The socket and view are driven through a fake WebSocket
// and a small fake DOM that implements only what run_log.js touches (no jsdom, no npm).

import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { readFileSync } from "node:fs";

import {
  LogLines,
  SearchMatches,
  formatDuration,
  lineFromHash,
  nextBackoff,
  parseAnsi,
  startRunLog,
  websocketUrl,
} from "../../static/js/run_log.js";

const ESC = "\x1b";

function segment(text, classes = [], style = "") {
  return { text, classes, style };
}

describe("parseAnsi", () => {
  test("plain text comes back as one unstyled segment", () => {
    assert.deepEqual(parseAnsi("Step 1/3 : FROM scratch"), [segment("Step 1/3 : FROM scratch")]);
  });

  test("an empty line has no segments", () => {
    assert.deepEqual(parseAnsi(""), []);
  });

  test("ESC[0m and the bare ESC[m reset every attribute", () => {
    assert.deepEqual(parseAnsi(`${ESC}[1;4;31;42mloud${ESC}[0mquiet${ESC}[3mslanted${ESC}[mplain`), [
      segment("loud", ["ansi-fg-red", "ansi-bg-green", "ansi-bold", "ansi-underline"]),
      segment("quiet"),
      segment("slanted", ["ansi-italic"]),
      segment("plain"),
    ]);
  });

  test("bold, dim, italic and underline become classes", () => {
    assert.deepEqual(parseAnsi(`${ESC}[1mb${ESC}[2md${ESC}[3mi${ESC}[4mu`), [
      segment("b", ["ansi-bold"]),
      segment("d", ["ansi-bold", "ansi-dim"]),
      segment("i", ["ansi-bold", "ansi-dim", "ansi-italic"]),
      segment("u", ["ansi-bold", "ansi-dim", "ansi-italic", "ansi-underline"]),
    ]);
  });

  test("22 turns off bold and dim, 23 italic and 24 underline", () => {
    assert.deepEqual(parseAnsi(`${ESC}[1;2;3;4mall${ESC}[22mno weight${ESC}[23mupright${ESC}[24mplain`), [
      segment("all", ["ansi-bold", "ansi-dim", "ansi-italic", "ansi-underline"]),
      segment("no weight", ["ansi-italic", "ansi-underline"]),
      segment("upright", ["ansi-underline"]),
      segment("plain"),
    ]);
  });

  test("foreground codes 30-37 and 90-97 become the sixteen named colour classes", () => {
    const names = ["black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"];
    names.forEach((name, offset) => {
      assert.deepEqual(parseAnsi(`${ESC}[${30 + offset}mx`), [segment("x", [`ansi-fg-${name}`])]);
      assert.deepEqual(parseAnsi(`${ESC}[${90 + offset}mx`), [segment("x", [`ansi-fg-bright-${name}`])]);
    });
  });

  test("background codes 40-47 and 100-107 become the sixteen named colour classes", () => {
    const names = ["black", "red", "green", "yellow", "blue", "magenta", "cyan", "white"];
    names.forEach((name, offset) => {
      assert.deepEqual(parseAnsi(`${ESC}[${40 + offset}mx`), [segment("x", [`ansi-bg-${name}`])]);
      assert.deepEqual(parseAnsi(`${ESC}[${100 + offset}mx`), [segment("x", [`ansi-bg-bright-${name}`])]);
    });
  });

  test("39 and 49 restore the default foreground and background, leaving the rest", () => {
    assert.deepEqual(parseAnsi(`${ESC}[1;33;44mA${ESC}[39mB${ESC}[49mC`), [
      segment("A", ["ansi-fg-yellow", "ansi-bg-blue", "ansi-bold"]),
      segment("B", ["ansi-bg-blue", "ansi-bold"]),
      segment("C", ["ansi-bold"]),
    ]);
  });

  test("combined parameters such as ESC[1;31m apply together", () => {
    assert.deepEqual(parseAnsi(`${ESC}[1;31mERROR${ESC}[0m: failed`), [
      segment("ERROR", ["ansi-fg-red", "ansi-bold"]),
      segment(": failed"),
    ]);
  });

  test("256-colour entries 0-15 map onto the sixteen named classes", () => {
    assert.deepEqual(parseAnsi(`${ESC}[38;5;1mx`), [segment("x", ["ansi-fg-red"])]);
    assert.deepEqual(parseAnsi(`${ESC}[38;5;9mx`), [segment("x", ["ansi-fg-bright-red"])]);
    assert.deepEqual(parseAnsi(`${ESC}[48;5;4mx`), [segment("x", ["ansi-bg-blue"])]);
    assert.deepEqual(parseAnsi(`${ESC}[48;5;15mx`), [segment("x", ["ansi-bg-bright-white"])]);
  });

  test("256-colour entries above 15 become inline colours from the xterm palette", () => {
    assert.deepEqual(parseAnsi(`${ESC}[38;5;196mx`), [segment("x", [], "color: #ff0000")]);
    assert.deepEqual(parseAnsi(`${ESC}[38;5;67mx`), [segment("x", [], "color: #5f87af")]);
    assert.deepEqual(parseAnsi(`${ESC}[38;5;16mx`), [segment("x", [], "color: #000000")]);
    assert.deepEqual(parseAnsi(`${ESC}[48;5;232mx`), [segment("x", [], "background-color: #080808")]);
    assert.deepEqual(parseAnsi(`${ESC}[38;5;255;48;5;240mx`), [
      segment("x", [], "color: #eeeeee; background-color: #585858"),
    ]);
  });

  test("the arguments of a 256-colour code are not read as codes of their own", () => {
    // Read naively, the 1 would mean bold and the 4 underline.
    assert.deepEqual(parseAnsi(`${ESC}[38;5;1;48;5;4mx`), [segment("x", ["ansi-fg-red", "ansi-bg-blue"])]);
  });

  test("the colon form 38:5:n and 24-bit colours are understood too", () => {
    assert.deepEqual(parseAnsi(`${ESC}[38:5:2mx`), [segment("x", ["ansi-fg-green"])]);
    assert.deepEqual(parseAnsi(`${ESC}[38;2;255;128;0mx`), [segment("x", [], "color: #ff8000")]);
    assert.deepEqual(parseAnsi(`${ESC}[48:2::0:0:255mx`), [segment("x", [], "background-color: #0000ff")]);
  });

  test("cursor movement, erase-line and other CSI sequences are stripped", () => {
    const line = `${ESC}[2K${ESC}[1A${ESC}[?25lDownloading${ESC}[K 42%${ESC}[10G!${ESC}[?25h`;
    assert.deepEqual(parseAnsi(line), [segment("Downloading 42%!")]);
  });

  test("OSC sequences such as window titles and hyperlinks are stripped", () => {
    const line = `${ESC}]0;my title\x07see ${ESC}]8;;https://example.com${ESC}\\the docs${ESC}]8;;${ESC}\\ now`;
    assert.deepEqual(parseAnsi(line), [segment("see the docs now")]);
  });

  test("other escapes such as charset selection are stripped", () => {
    assert.deepEqual(parseAnsi(`${ESC}(Bok${ESC}7${ESC}=`), [segment("ok")]);
  });

  test("an escape cut off at the end of a line still arriving is hidden", () => {
    assert.deepEqual(parseAnsi(`50% ${ESC}[3`), [segment("50% ")]);
    assert.deepEqual(parseAnsi(`50% ${ESC}`), [segment("50% ")]);
    assert.deepEqual(parseAnsi(`50% ${ESC}]0;half a ti`), [segment("50% ")]);
  });

  test("HTML special characters are kept as plain text", () => {
    const line = `<script>alert("x & y")</script> &amp; <b>`;
    assert.deepEqual(parseAnsi(line), [segment(line)]);
  });

  test("stray control characters are removed but tabs are kept", () => {
    assert.deepEqual(parseAnsi("a\x07b\x08c\td\x00e"), [segment("abc\tde")]);
  });
});

describe("LogLines", () => {
  function texts(log) {
    return log.lines.filter((line) => !line.header).map((line) => line.text);
  }

  test("a line split across chunks is joined into one", () => {
    const log = new LogLines();
    log.append(1, "build", "Step 1/3 : FR");
    log.append(2, "build", "OM scratch\nStep 2/3");
    log.append(3, "build", " : COPY . /\n");
    assert.deepEqual(texts(log), ["Step 1/3 : FROM scratch", "Step 2/3 : COPY . /"]);
  });

  test("a line still without its newline is already visible", () => {
    const log = new LogLines();
    log.append(1, "build", "done\nwaiting for");
    assert.deepEqual(texts(log), ["done", "waiting for"]);
  });

  test("a carriage return lets the next text overwrite the line, so a progress bar shows its last state", () => {
    const log = new LogLines();
    log.append(1, "build", "pulling 10%\rpulling 55%\rpulling 100%\nnext\n");
    assert.deepEqual(texts(log), ["pulling 100%", "next"]);
  });

  test("a carriage return at the end of a chunk is applied to the next chunk's text", () => {
    const log = new LogLines();
    log.append(1, "build", "pulling 10%\r");
    assert.deepEqual(texts(log), ["pulling 10%"]);
    log.append(2, "build", "pulling 20%");
    assert.deepEqual(texts(log), ["pulling 20%"]);
  });

  test("\\r\\n ends a line like \\n, even when a chunk ends between the two", () => {
    const log = new LogLines();
    log.append(1, "test", "one\r\ntwo\r");
    log.append(2, "test", "\nthree\r\n");
    assert.deepEqual(texts(log), ["one", "two", "three"]);
  });

  test("blank lines are kept", () => {
    const log = new LogLines();
    log.append(1, "test", "a\n\nb\n");
    assert.deepEqual(texts(log), ["a", "", "b"]);
  });

  test("a chunk whose seq is not newer than the last applied one is dropped", () => {
    const log = new LogLines();
    assert.equal(log.append(1, "build", "one\n"), true);
    assert.equal(log.append(2, "build", "two\n"), true);
    assert.equal(log.append(2, "build", "two\n"), false);
    assert.equal(log.append(1, "build", "one\n"), false);
    assert.equal(log.append(3, "build", "three\n"), true);
    assert.deepEqual(texts(log), ["one", "two", "three"]);
    assert.equal(log.lastSeq, 3);
  });

  test("the first seq applied can be set, for a page that rendered the start of the log", () => {
    const log = new LogLines({ lastSeq: 5 });
    assert.equal(log.append(5, "build", "old\n"), false);
    assert.equal(log.append(6, "build", "new\n"), true);
    assert.deepEqual(texts(log), ["new"]);
  });

  test("a header line marks the start of each stage", () => {
    const log = new LogLines();
    log.append(1, "checkout", "cloned\n");
    log.append(2, "build", "Step 1/1\n");
    log.append(3, "build", "built\n");
    assert.deepEqual(
      log.lines.map(({ text, stage, header }) => ({ text, stage, header })),
      [
        { text: "── checkout ──", stage: "checkout", header: true },
        { text: "cloned", stage: "checkout", header: false },
        { text: "── build ──", stage: "build", header: true },
        { text: "Step 1/1", stage: "build", header: false },
        { text: "built", stage: "build", header: false },
      ],
    );
  });

  test("a line left unfinished when the stage changes is not continued by the next stage", () => {
    const log = new LogLines();
    log.append(1, "build", "no newline at the end");
    log.append(2, "test", "collected 3 items\n");
    assert.deepEqual(texts(log), ["no newline at the end", "collected 3 items"]);
    assert.equal(log.lines[1].stage, "build");
    assert.equal(log.lines[3].stage, "test");
  });

  test("a colour set on one line carries on to the next, as in a terminal", () => {
    const log = new LogLines();
    log.append(1, "test", `${ESC}[31mTraceback:\n  line 3\n${ESC}[0mdone\n`);
    const [, , stillRed, done] = log.lines;
    assert.deepEqual(parseAnsi(stillRed.text, stillRed.ansiState), [segment("  line 3", ["ansi-fg-red"])]);
    assert.deepEqual(parseAnsi(done.text, done.ansiState), [segment("done")]);
  });

  test("a colour left on by one stage does not carry into the next", () => {
    const log = new LogLines();
    log.append(1, "build", `${ESC}[31mforgot to reset\n`);
    log.append(2, "test", "plain\n");
    const plain = log.lines.at(-1);
    assert.deepEqual(parseAnsi(plain.text, plain.ansiState), [segment("plain")]);
  });

  test("a colour set before a carriage return still applies to the text that overwrites the line", () => {
    const log = new LogLines();
    log.append(1, "build", `${ESC}[32m 10%\r 20%`);
    const line = log.lines.at(-1);
    assert.equal(line.text, " 20%");
    assert.deepEqual(parseAnsi(line.text, line.ansiState), [segment(" 20%", ["ansi-fg-green"])]);
  });

  test("100,000 lines appended in chunks are all there", () => {
    const log = new LogLines();
    for (let chunk = 0; chunk < 1000; chunk++) {
      const lines = Array.from({ length: 100 }, (_, n) => `line ${chunk * 100 + n}`);
      log.append(chunk + 1, "test", `${lines.join("\n")}\n`);
    }
    assert.equal(log.lineCount, 100_001); // the stage header, then the lines
    assert.equal(log.lines.at(-1).text, "line 99999");
    assert.equal(log.lastSeq, 1000);
  });
});

describe("LogLines: line numbers", () => {
  test("lines of output are numbered from 1 across stages, and stage headers are not numbered", () => {
    const log = new LogLines();
    log.append(1, "checkout", "cloned\n");
    log.append(2, "build", "step 1\nstep 2\n");
    assert.deepEqual(
      log.lines.map((line) => [line.number, line.text]),
      [[null, "── checkout ──"], [1, "cloned"], [null, "── build ──"], [2, "step 1"], [3, "step 2"]],
    );
    assert.equal(log.numberedCount, 3);
  });

  test("a line a stage left unfinished keeps its number and the next stage starts on the next", () => {
    // The same log as the server's test of web/log_lines.py: both must number it alike.
    const log = new LogLines();
    log.append(1, "checkout", "no newline at the end");
    log.append(2, "build", "first\r\nsecond\n\nlast");
    assert.deepEqual(
      log.lines.filter((line) => !line.header).map((line) => [line.number, line.stage]),
      [[1, "checkout"], [2, "build"], [3, "build"], [4, "build"], [5, "build"]],
    );
  });

  test("indexOfNumber finds each numbered line and nothing past the last", () => {
    const log = new LogLines();
    log.append(1, "build", "a\nb\n");
    assert.equal(log.lines[log.indexOfNumber(1)].text, "a");
    assert.equal(log.lines[log.indexOfNumber(2)].text, "b");
    assert.equal(log.indexOfNumber(3), undefined);
  });
});

describe("LogLines: sections of a stage", () => {
  // The same log as the server's test of web/log_lines.py reads: both must number it alike.
  const SECTIONED = JSON.parse(readFileSync(new URL("./sectioned_log.json", import.meta.url), "utf8"));

  function sectionedLog() {
    const log = new LogLines();
    SECTIONED.chunks.forEach(([stage, section, text], index) => log.append(index + 1, stage, text, section));
    return log;
  }

  function shown(line) {
    return parseAnsi(line.text, line.ansiState).map((segment) => segment.text).join("");
  }

  test("lines are numbered as the server numbers them, sections and all", () => {
    const numbered = sectionedLog().lines.filter((line) => !line.header);
    assert.deepEqual(
      numbered.map((line) => [line.number, line.stage, line.section, shown(line)]),
      SECTIONED.lines,
    );
  });

  test("each change of section starts a header of its own, unnumbered; a section coming back is continued", () => {
    const headers = sectionedLog().lines.filter((line) => line.header);
    assert.deepEqual(
      headers.map(({ text, stage, section, number }) => [text, stage, section, number]),
      [
        ["── checkout ──", "checkout", null, null],
        ["── test ──", "test", null, null],
        ["── test › services ──", "test", "services", null],
        ["── test › unit ──", "test", "unit", null],
        ["── test › integration ──", "test", "integration", null],
        ["── test › unit, continued ──", "test", "unit", null],
        ["── test › integration, continued ──", "test", "integration", null],
        ["── test › unit, continued ──", "test", "unit", null],
        ["── test › integration, continued ──", "test", "integration", null],
        ["── test › unit, continued ──", "test", "unit", null],
        ["── test, continued ──", "test", "", null],
        ["── publish ──", "publish", null, null],
      ],
    );
  });

  test("a stage whose first chunk is a section's gets its stage header, then the section's", () => {
    const log = new LogLines();
    log.append(1, "test", "$ make test\n", "unit");
    assert.deepEqual(log.lines.map((line) => line.text), ["── test ──", "── test › unit ──", "$ make test"]);
  });

  test("a section's colour waits for it while another section writes", () => {
    const log = new LogLines();
    log.append(1, "test", `${ESC}[31mTraceback:\n`, "unit");
    log.append(2, "test", "plain\n", "integration");
    log.append(3, "test", "  still red\n", "unit");
    const [plain, stillRed] = [log.lines[log.indexOfNumber(2)], log.lines[log.indexOfNumber(3)]];
    assert.deepEqual(parseAnsi(plain.text, plain.ansiState), [segment("plain")]);
    assert.deepEqual(parseAnsi(stillRed.text, stillRed.ansiState), [segment("  still red", ["ansi-fg-red"])]);
  });
});

describe("formatDuration", () => {
  test("durations read as the server writes them, as precise as their length deserves", () => {
    assert.equal(formatDuration(3.24), "3.2 s");
    assert.equal(formatDuration(60), "1 min 00 s");
    assert.equal(formatDuration(245), "4 min 05 s");
    assert.equal(formatDuration(2 * 3600 + 7 * 60 + 20), "2 h 07 min");
    assert.equal(formatDuration(3 * 86400 + 4 * 3600), "3 d 4 h");
  });
});

describe("lineFromHash", () => {
  test("#L followed by a line number names that line; anything else names none", () => {
    assert.equal(lineFromHash("#L1234"), 1234);
    for (const hash of ["", "#", "#L", "#L0", "#L12a", "#l12", "#L-3", "#main"]) {
      assert.equal(lineFromHash(hash), null, hash);
    }
  });
});

describe("SearchMatches", () => {
  test("the search starts at the first match at or below the line in view, else the first", () => {
    const matches = new SearchMatches([10, 2500, 4000]);
    assert.equal(matches.startAt(1), 10);
    assert.equal(matches.startAt(2500), 2500);
    assert.equal(matches.startAt(2501), 4000);
    assert.equal(matches.startAt(4001), 10);
  });

  test("next and previous go round the matches", () => {
    const matches = new SearchMatches([10, 2500, 4000]);
    matches.startAt(1);
    assert.deepEqual([matches.next(), matches.next(), matches.next()], [2500, 4000, 10]);
    assert.deepEqual([matches.previous(), matches.previous()], [4000, 2500]);
  });

  test("the status says which match of how many is shown, or that no line matched", () => {
    const matches = new SearchMatches([10, 2500]);
    matches.startAt(100);
    assert.equal(matches.describe("error"), "2 of 2 · line 2500");
    const capped = new SearchMatches([1, 2], { truncated: true });
    capped.startAt(1);
    assert.equal(capped.describe("a"), "1 of the first 2 · line 1");
    const none = new SearchMatches([]);
    assert.equal(none.startAt(1), null);
    assert.equal(none.next(), null);
    assert.equal(none.describe("needle"), "No line contains “needle”.");
  });
});

describe("nextBackoff", () => {
  test("reconnect delays double from half a second and stop growing at ten seconds", () => {
    const delays = [];
    let delay = 0;
    for (let attempt = 0; attempt < 8; attempt++) {
      delay = nextBackoff(delay);
      delays.push(delay);
    }
    assert.deepEqual(delays, [500, 1000, 2000, 4000, 8000, 10000, 10000, 10000]);
  });
});

describe("websocketUrl", () => {
  test("the socket URL uses wss on https pages and ws on http pages, on the page's host", () => {
    assert.equal(websocketUrl("/ws/runs/42/", { protocol: "https:", host: "ci.example.com" }), "wss://ci.example.com/ws/runs/42/");
    assert.equal(websocketUrl("/ws/runs/42/", { protocol: "http:", host: "localhost:8000" }), "ws://localhost:8000/ws/runs/42/");
  });
});

// --- A fake DOM: only the parts run_log.js uses --------------------------------------------------

const LINE_HEIGHT = 20;
const VIEWPORT_HEIGHT = 400; // 20 lines
const WIDE_ROW_CHARACTERS = 80;
const SCROLLBAR_HEIGHT = 15;

class FakeText {
  parent = null;
  constructor(text) {
    this.textContent = text;
  }
  remove() {
    detach(this);
  }
}

class FakeElement {
  parent = null;
  children = [];
  className = "";
  id = "";
  style = {};
  dataset = {};
  attributes = {};
  #listeners = {};

  constructor(ownerDocument, tagName) {
    this.ownerDocument = ownerDocument;
    this.tagName = tagName;
  }

  get textContent() {
    return this.children.map((child) => child.textContent).join("");
  }
  set textContent(text) {
    this.replaceChildren(...(text === "" ? [] : [new FakeText(text)]));
  }

  append(...nodes) {
    for (const node of nodes) this.#adopt(node, this.children.length);
  }
  prepend(...nodes) {
    nodes.forEach((node, index) => this.#adopt(node, index));
  }
  replaceChildren(...nodes) {
    for (const child of [...this.children]) detach(child);
    this.append(...nodes);
  }
  remove() {
    detach(this);
  }
  #adopt(node, index) {
    detach(node);
    node.parent = this;
    this.children.splice(index, 0, node);
  }

  addEventListener(type, listener) {
    (this.#listeners[type] ??= []).push(listener);
  }
  dispatch(type, properties = {}) {
    for (const listener of this.#listeners[type] ?? []) listener({ type, ...properties });
  }
  closest(selector) {
    for (let node = this; node; node = node.parent) {
      if (node instanceof FakeElement && matches(node, selector)) return node;
    }
    return null;
  }

  setAttribute(name, value) {
    this.attributes[name] = String(value);
  }
  getAttribute(name) {
    return this.attributes[name] ?? null;
  }

  getBoundingClientRect() {
    return { height: LINE_HEIGHT };
  }

  *descendants() {
    for (const child of this.children) {
      yield child;
      if (child instanceof FakeElement) yield* child.descendants();
    }
  }
  querySelector(selector) {
    return this.querySelectorAll(selector)[0] ?? null;
  }
  // Understands ".class" and "tag[data-name]", all this module asks for.
  querySelectorAll(selector) {
    return [...this.descendants()].filter((node) => node instanceof FakeElement && matches(node, selector));
  }
}

function detach(node) {
  if (!node.parent) return;
  node.parent.children.splice(node.parent.children.indexOf(node), 1);
  node.parent = null;
}

function matches(element, selector) {
  if (selector.startsWith(".")) return element.className.split(" ").includes(selector.slice(1));
  const dataAttribute = selector.match(/^(\w+)\[data-(\w+)\]$/);
  if (!dataAttribute) return false;
  const [, tagName, attribute] = dataAttribute;
  return element.tagName === tagName && element.dataset[attribute] !== undefined;
}

// A scroll container laid out as a browser would: its content is as tall as the spacer's inline
// height, and a row wider than WIDE_ROW_CHARACTERS brings in a horizontal scrollbar that takes
// SCROLLBAR_HEIGHT off the viewport.
class FakeScrollContainer extends FakeElement {
  viewportHeight = VIEWPORT_HEIGHT;
  #scrollTop = 0;

  get clientHeight() {
    const rows = this.querySelector(".log-rows")?.children ?? [];
    const hasWideRow = rows.some((row) => row.textContent.length > WIDE_ROW_CHARACTERS);
    return this.viewportHeight - (hasWideRow ? SCROLLBAR_HEIGHT : 0);
  }

  get scrollHeight() {
    const spacerHeight = Number.parseFloat(this.children[0]?.style.height) || 0;
    return Math.max(this.clientHeight, spacerHeight);
  }
  get scrollTop() {
    return this.#scrollTop;
  }
  set scrollTop(value) {
    this.#scrollTop = Math.max(0, Math.min(value, this.scrollHeight - this.clientHeight));
  }
}

class FakeDocument {
  body = new FakeElement(this, "body");
  createElement(tagName) {
    return new FakeElement(this, tagName);
  }
  createTextNode(text) {
    return new FakeText(text);
  }
  getElementById(id) {
    return [...this.body.descendants()].find((node) => node.id === id) ?? null;
  }
  querySelectorAll(selector) {
    return this.body.querySelectorAll(selector);
  }
}

function element(document, tagName, { id = "", className = "", text = "", dataset = {} } = {}, children = []) {
  const node = document.createElement(tagName);
  Object.assign(node, { id, className });
  Object.assign(node.dataset, dataset);
  if (text) node.textContent = text;
  node.append(...children);
  return node;
}

function stageItem(document, name, status) {
  return element(document, "li", { dataset: { stage: name } }, [
    element(document, "span", { className: `status status-${status}`, text: status }),
    document.createTextNode(" "),
    element(document, "span", { className: "duration" }),
  ]);
}

// The run page as the template renders it.
function buildRunPage({ status = "running", after = "0", errorLine } = {}) {
  const document = new FakeDocument();
  const runLog = new FakeScrollContainer(document, "div");
  Object.assign(runLog, { id: "run-log" });
  Object.assign(runLog.dataset, { wsUrl: "/ws/runs/42/", searchUrl: "/projects/web/runs/3/log/search", after });
  if (errorLine !== undefined) runLog.dataset.errorLine = String(errorLine);
  document.body.append(
    element(document, "span", { id: "run-status", className: `status status-${status}`, text: status }),
    element(document, "p", { id: "failure-reason" }),
    element(document, "ul", { id: "stages" }, [
      stageItem(document, "checkout", "succeeded"),
      stageItem(document, "build", "pending"),
    ]),
    runLog,
  );
  return { document, runLog };
}

function renderedRows(runLog) {
  return runLog.querySelector(".log-rows").children;
}

// What each row says, without its line number or fold button.
function renderedText(runLog) {
  return renderedRows(runLog).map((row) => row.querySelector(".log-text").textContent);
}

function countNodes(root) {
  return [...root.descendants()].length;
}

// --- A fake WebSocket, driven by the test -----------------------------------------------------

function fakeWebSocketClass() {
  return class FakeWebSocket {
    static instances = [];
    static get latest() {
      return FakeWebSocket.instances.at(-1);
    }

    sent = [];
    closedByClient = false;

    constructor(url) {
      this.url = url;
      FakeWebSocket.instances.push(this);
    }
    send(data) {
      this.sent.push(JSON.parse(data));
    }
    close() {
      this.closedByClient = true;
      this.onclose?.({ code: 1000 });
    }

    serverOpens() {
      this.onopen?.({});
    }
    serverSends(message) {
      this.onmessage?.({ data: JSON.stringify(message) });
    }
    serverDrops() {
      this.onclose?.({ code: 1006 });
    }
  };
}

function logChunk(seq, text, stage = "build") {
  return { type: "log", seq, stage, text };
}

function statusMessage(status, { stages = [], failureReason = "" } = {}) {
  return { type: "status", run: { status, failure_reason: failureReason, stages } };
}

function startOnFakePage(t, { hash = "", fetchImpl, ...pageOptions } = {}) {
  t.mock.timers.enable({ apis: ["setTimeout"] });
  const page = buildRunPage(pageOptions);
  const WebSocketImpl = fakeWebSocketClass();
  const handle = startRunLog(page.runLog, {
    WebSocketImpl,
    location: { protocol: "https:", host: "ci.example.com", hash },
    requestFrame: (callback) => callback(),
    fetchImpl,
  });
  return { ...page, WebSocketImpl, handle };
}

// A server that answers every search with the same line numbers, and notes what it was asked.
function fakeSearchServer(lines, { truncated = false } = {}) {
  const asked = [];
  const fetchImpl = async (url) => {
    asked.push(url);
    const matches = lines.map((line) => ({ line, stage: "build", text: `line ${line}` }));
    return { ok: true, status: 200, json: async () => ({ matches, truncated }) };
  };
  return { asked, fetchImpl };
}

function rowOfLine(runLog, number) {
  return renderedRows(runLog).find((row) => row.dataset.line === String(number));
}

function manyLines(first, count) {
  return Array.from({ length: count }, (_, n) => `line ${first + n}\n`).join("");
}

describe("startRunLog: the socket protocol", () => {
  test("it connects to data-ws-url on the page's host, with wss on an https page", (t) => {
    const { WebSocketImpl } = startOnFakePage(t);
    assert.equal(WebSocketImpl.instances.length, 1);
    assert.equal(WebSocketImpl.latest.url, "wss://ci.example.com/ws/runs/42/");
  });

  test("on open it asks for everything after seq 0", (t) => {
    const { WebSocketImpl } = startOnFakePage(t);
    WebSocketImpl.latest.serverOpens();
    assert.deepEqual(WebSocketImpl.latest.sent, [{ after: 0 }]);
  });

  test("on open it asks for what comes after data-after when the page sets it", (t) => {
    const { WebSocketImpl } = startOnFakePage(t, { after: "17" });
    WebSocketImpl.latest.serverOpens();
    assert.deepEqual(WebSocketImpl.latest.sent, [{ after: 17 }]);
  });

  test("log chunks show up in the view as lines under a stage header", (t) => {
    const { WebSocketImpl, runLog } = startOnFakePage(t);
    const socket = WebSocketImpl.latest;
    socket.serverOpens();
    socket.serverSends(logChunk(1, "Step 1/2 : FROM alpine\nStep 2/"));
    socket.serverSends(logChunk(2, "2 : RUN true\n"));
    assert.deepEqual(renderedText(runLog), ["── build ──", "Step 1/2 : FROM alpine", "Step 2/2 : RUN true"]);
  });

  test("after the socket drops it reconnects in 0.5 s and asks for what came after the last applied seq", (t) => {
    const { WebSocketImpl } = startOnFakePage(t);
    const first = WebSocketImpl.latest;
    first.serverOpens();
    first.serverSends(logChunk(1, "one\n"));
    first.serverSends(logChunk(2, "two\n"));
    first.serverDrops();

    t.mock.timers.tick(499);
    assert.equal(WebSocketImpl.instances.length, 1);
    t.mock.timers.tick(1);
    assert.equal(WebSocketImpl.instances.length, 2);

    WebSocketImpl.latest.serverOpens();
    assert.deepEqual(WebSocketImpl.latest.sent, [{ after: 2 }]);
  });

  test("a chunk resent after a reconnect is not shown twice", (t) => {
    const { WebSocketImpl, runLog } = startOnFakePage(t);
    WebSocketImpl.latest.serverOpens();
    WebSocketImpl.latest.serverSends(logChunk(1, "one\n"));
    WebSocketImpl.latest.serverSends(logChunk(2, "two\n"));
    WebSocketImpl.latest.serverDrops();
    t.mock.timers.tick(500);

    const second = WebSocketImpl.latest;
    second.serverOpens();
    second.serverSends(logChunk(2, "two\n"));
    second.serverSends(logChunk(3, "three\n"));
    assert.deepEqual(renderedText(runLog), ["── build ──", "one", "two", "three"]);
  });

  test("reconnect delays grow while the server stays away and start over once messages flow", (t) => {
    const { WebSocketImpl } = startOnFakePage(t);
    const waits = [];
    for (let attempt = 0; attempt < 3; attempt++) {
      const before = WebSocketImpl.instances.length;
      WebSocketImpl.latest.serverDrops();
      let waited = 0;
      while (WebSocketImpl.instances.length === before) {
        t.mock.timers.tick(250);
        waited += 250;
      }
      waits.push(waited);
    }
    assert.deepEqual(waits, [500, 1000, 2000]);

    WebSocketImpl.latest.serverOpens();
    WebSocketImpl.latest.serverSends(logChunk(1, "back\n"));
    WebSocketImpl.latest.serverDrops();
    t.mock.timers.tick(500);
    assert.equal(WebSocketImpl.instances.length, 5);
  });

  test("a final status followed by a close ends the reconnecting", (t) => {
    const { WebSocketImpl } = startOnFakePage(t);
    WebSocketImpl.latest.serverOpens();
    WebSocketImpl.latest.serverSends(logChunk(1, "done\n"));
    WebSocketImpl.latest.serverSends(statusMessage("succeeded"));
    WebSocketImpl.latest.serverDrops();
    t.mock.timers.tick(60_000);
    assert.equal(WebSocketImpl.instances.length, 1);
  });

  test("a final status alone does not close the socket: chunks after it are still shown", (t) => {
    const { WebSocketImpl, runLog } = startOnFakePage(t);
    WebSocketImpl.latest.serverOpens();
    WebSocketImpl.latest.serverSends(statusMessage("failed"));
    WebSocketImpl.latest.serverSends(logChunk(1, "last words\n"));
    assert.equal(WebSocketImpl.latest.closedByClient, false);
    assert.deepEqual(renderedText(runLog), ["── build ──", "last words"]);
  });

  test("a close while the run is still running is retried even after status messages", (t) => {
    const { WebSocketImpl } = startOnFakePage(t);
    WebSocketImpl.latest.serverOpens();
    WebSocketImpl.latest.serverSends(statusMessage("running"));
    WebSocketImpl.latest.serverDrops();
    t.mock.timers.tick(500);
    assert.equal(WebSocketImpl.instances.length, 2);
  });

  test("a page that already shows a finished run reads the log once and does not reconnect", (t) => {
    const { WebSocketImpl } = startOnFakePage(t, { status: "failed" });
    WebSocketImpl.latest.serverOpens();
    WebSocketImpl.latest.serverSends(logChunk(1, "error\n"));
    WebSocketImpl.latest.serverDrops();
    t.mock.timers.tick(60_000);
    assert.equal(WebSocketImpl.instances.length, 1);
  });

  test("stop closes the socket and no reconnect follows", (t) => {
    const { WebSocketImpl, handle } = startOnFakePage(t);
    WebSocketImpl.latest.serverOpens();
    handle.stop();
    assert.equal(WebSocketImpl.latest.closedByClient, true);
    t.mock.timers.tick(60_000);
    assert.equal(WebSocketImpl.instances.length, 1);
  });
});

describe("startRunLog: status messages", () => {
  test("a status message updates the run status and each stage's status, colour and duration", (t) => {
    const { WebSocketImpl, document } = startOnFakePage(t);
    WebSocketImpl.latest.serverOpens();
    WebSocketImpl.latest.serverSends(
      statusMessage("failed", {
        failureReason: "build: exit code 2",
        stages: [
          { name: "checkout", status: "succeeded", duration: 1.23 },
          { name: "build", status: "failed", duration: 3.2 },
          { name: "test", status: "skipped", duration: null },
        ],
      }),
    );

    const runStatus = document.getElementById("run-status");
    assert.equal(runStatus.textContent, "failed");
    assert.equal(runStatus.className, "status status-failed");

    const [checkout, build] = document.querySelectorAll("li[data-stage]");
    assert.equal(checkout.querySelector(".duration").textContent, "1.2 s");
    assert.equal(build.className, "stage stage-failed");
    assert.equal(build.querySelector(".status").textContent, "failed");
    assert.equal(build.querySelector(".status").className, "status status-failed");
    assert.equal(build.querySelector(".duration").textContent, "3.2 s");
  });

  test("the failure banner is left to the page the server draws once the run has ended", (t) => {
    const { WebSocketImpl, document } = startOnFakePage(t);
    const banner = document.getElementById("failure-reason");
    banner.textContent = "Failed at build: exit code 2";
    WebSocketImpl.latest.serverSends(statusMessage("failed", { failureReason: "exit code 2" }));
    assert.equal(banner.textContent, "Failed at build: exit code 2");
  });

  test("a stage whose duration is still null keeps its duration empty", (t) => {
    const { WebSocketImpl, document } = startOnFakePage(t);
    WebSocketImpl.latest.serverSends(statusMessage("running", { stages: [{ name: "build", status: "running", duration: null }] }));
    const build = document.querySelectorAll("li[data-stage]")[1];
    assert.equal(build.querySelector(".status").className, "status status-running");
    assert.equal(build.querySelector(".duration").textContent, "");
  });
});

describe("startRunLog: the view", () => {
  test("100,000 lines render only the rows in view, not a node per line", (t) => {
    const { WebSocketImpl, runLog, handle } = startOnFakePage(t);
    WebSocketImpl.latest.serverOpens();
    for (let chunk = 0; chunk < 1000; chunk++) {
      WebSocketImpl.latest.serverSends(logChunk(chunk + 1, manyLines(chunk * 100, 100)));
    }
    assert.equal(handle.log.lineCount, 100_001);
    assert.equal(runLog.querySelector(".log-spacer").style.height, `${100_001 * LINE_HEIGHT}px`);
    assert.ok(renderedRows(runLog).length <= VIEWPORT_HEIGHT / LINE_HEIGHT + 61, "only the visible rows and the overscan");
    assert.ok(countNodes(runLog) < 300, `${countNodes(runLog)} nodes in the log`);
    assert.equal(renderedText(runLog).at(-1), "line 99999");
  });

  test("the view follows new output while it is scrolled to the bottom", (t) => {
    const { WebSocketImpl, runLog } = startOnFakePage(t);
    WebSocketImpl.latest.serverOpens();
    WebSocketImpl.latest.serverSends(logChunk(1, manyLines(0, 100)));
    assert.equal(runLog.scrollTop, runLog.scrollHeight - runLog.clientHeight);
    WebSocketImpl.latest.serverSends(logChunk(2, manyLines(100, 50)));
    assert.equal(runLog.scrollTop, runLog.scrollHeight - runLog.clientHeight);
    assert.equal(renderedText(runLog).at(-1), "line 149");
  });

  test("the newest line is not left behind a horizontal scrollbar that a long line brings in", (t) => {
    const { WebSocketImpl, runLog } = startOnFakePage(t);
    WebSocketImpl.latest.serverOpens();
    WebSocketImpl.latest.serverSends(logChunk(1, manyLines(0, 100)));
    WebSocketImpl.latest.serverSends(logChunk(2, `${"=".repeat(120)}\nlast\n`));
    assert.equal(runLog.clientHeight, VIEWPORT_HEIGHT - SCROLLBAR_HEIGHT);
    assert.equal(runLog.scrollTop, runLog.scrollHeight - runLog.clientHeight);
    WebSocketImpl.latest.serverSends(logChunk(3, "after\n"));
    assert.equal(runLog.scrollTop, runLog.scrollHeight - runLog.clientHeight, "still following");
  });

  test("the view stays put when the reader has scrolled up", (t) => {
    const { WebSocketImpl, runLog } = startOnFakePage(t);
    WebSocketImpl.latest.serverOpens();
    WebSocketImpl.latest.serverSends(logChunk(1, manyLines(0, 100)));
    runLog.scrollTop = 10 * LINE_HEIGHT;
    runLog.dispatch("scroll");
    WebSocketImpl.latest.serverSends(logChunk(2, manyLines(100, 50)));
    assert.equal(runLog.scrollTop, 10 * LINE_HEIGHT);
  });

  test("scrolling draws the rows at the new position", (t) => {
    const { WebSocketImpl, runLog } = startOnFakePage(t);
    WebSocketImpl.latest.serverOpens();
    WebSocketImpl.latest.serverSends(logChunk(1, manyLines(0, 5000)));
    runLog.scrollTop = 2000 * LINE_HEIGHT; // line index 2000 is "line 1999": index 0 is the header
    runLog.dispatch("scroll");
    const firstDrawn = 2000 - 30;
    assert.equal(renderedText(runLog)[0], `line ${firstDrawn - 1}`);
    assert.equal(runLog.querySelector(".log-rows").style.transform, `translateY(${firstDrawn * LINE_HEIGHT}px)`);
    assert.ok(renderedText(runLog).includes("line 2019"), "the last visible line is drawn");
  });

  test("rows already drawn are kept when new lines arrive below them", (t) => {
    const { WebSocketImpl, runLog } = startOnFakePage(t);
    WebSocketImpl.latest.serverOpens();
    WebSocketImpl.latest.serverSends(logChunk(1, "first\nsecond\n"));
    const [header, first] = renderedRows(runLog);
    WebSocketImpl.latest.serverSends(logChunk(2, "third\n"));
    assert.equal(renderedRows(runLog)[0], header);
    assert.equal(renderedRows(runLog)[1], first);
    assert.deepEqual(renderedText(runLog), ["── build ──", "first", "second", "third"]);
  });

  test("a partial line is redrawn as the rest of it arrives", (t) => {
    const { WebSocketImpl, runLog } = startOnFakePage(t);
    WebSocketImpl.latest.serverOpens();
    WebSocketImpl.latest.serverSends(logChunk(1, "downloading 10%"));
    WebSocketImpl.latest.serverSends(logChunk(2, "\rdownloading 100%\ndone\n"));
    assert.deepEqual(renderedText(runLog), ["── build ──", "downloading 100%", "done"]);
  });

  test("stage headers are rows with the log-stage class and every row names its stage", (t) => {
    const { WebSocketImpl, runLog } = startOnFakePage(t);
    WebSocketImpl.latest.serverOpens();
    WebSocketImpl.latest.serverSends(logChunk(1, "cloned\n", "checkout"));
    WebSocketImpl.latest.serverSends(logChunk(2, "built\n", "build"));
    const rows = renderedRows(runLog);
    assert.deepEqual(rows.map((row) => row.className), ["log-line log-stage", "log-line", "log-line log-stage", "log-line"]);
    assert.deepEqual(rows.map((row) => row.dataset.stage), ["checkout", "checkout", "build", "build"]);
  });

  test("ANSI colours become spans with the ansi classes and inline colours", (t) => {
    const { WebSocketImpl, runLog } = startOnFakePage(t);
    WebSocketImpl.latest.serverOpens();
    WebSocketImpl.latest.serverSends(logChunk(1, `${ESC}[1;31mFAILED${ESC}[0m test_x ${ESC}[38;5;208morange${ESC}[0m\n`));
    const [failed, plain, orange] = renderedRows(runLog)[1].querySelector(".log-text").children;
    assert.equal(failed.tagName, "span");
    assert.equal(failed.className, "ansi-fg-red ansi-bold");
    assert.equal(failed.textContent, "FAILED");
    assert.ok(plain instanceof FakeText);
    assert.equal(plain.textContent, " test_x ");
    assert.equal(orange.style.cssText, "color: #ff8700");
  });

  test("markup in the log is shown as text, never turned into elements", (t) => {
    const { WebSocketImpl, runLog } = startOnFakePage(t);
    WebSocketImpl.latest.serverOpens();
    WebSocketImpl.latest.serverSends(logChunk(1, `<script>alert(1)</script>\n`));
    const text = renderedRows(runLog)[1].querySelector(".log-text");
    assert.equal(text.textContent, "<script>alert(1)</script>");
    assert.ok(text.children.every((child) => child instanceof FakeText));
  });

  test("a log element without a height from the page's CSS gets 32rem", () => {
    const { runLog } = buildRunPage();
    runLog.viewportHeight = 0;
    startRunLog(runLog, {
      WebSocketImpl: fakeWebSocketClass(),
      location: { protocol: "http:", host: "localhost" },
      requestFrame: (callback) => callback(),
    });
    assert.equal(runLog.style.height, "32rem");
    assert.equal(runLog.style.overflow, "auto");
  });
});

describe("startRunLog: line numbers, links, folding and search", () => {
  // Line n of the log is "line n": `manyLines(1, count)` after the one header row.
  function loadLines(WebSocketImpl, count, stage = "build") {
    WebSocketImpl.latest.serverOpens();
    WebSocketImpl.latest.serverSends(logChunk(1, manyLines(1, count), stage));
  }

  test("every line of output shows its number as a #L link; a stage header has a fold button instead", (t) => {
    const { WebSocketImpl, runLog } = startOnFakePage(t);
    loadLines(WebSocketImpl, 2);
    const [header, first] = renderedRows(runLog);
    const link = first.querySelector(".log-number");
    assert.equal(link.tagName, "a");
    assert.equal(link.href, "#L1");
    assert.equal(link.textContent, "1");
    assert.equal(first.dataset.line, "1");
    assert.equal(header.querySelector(".log-number"), null);
    assert.equal(header.querySelector(".log-fold").getAttribute("aria-expanded"), "true");
  });

  test("a page opened at #L1234 scrolls that line to the middle of the view and highlights it once it arrives", (t) => {
    const { WebSocketImpl, runLog } = startOnFakePage(t, { hash: "#L1234" });
    loadLines(WebSocketImpl, 5000);
    const middle = (VIEWPORT_HEIGHT - LINE_HEIGHT) / 2;
    assert.equal(runLog.scrollTop, 1234 * LINE_HEIGHT - middle, "row 1234 (after the header) in the middle");
    assert.match(rowOfLine(runLog, 1234).className, /\blog-line-target\b/);
    assert.doesNotMatch(rowOfLine(runLog, 1233).className, /log-line-target/);
  });

  test("the view stays at the linked line while more of the log arrives", (t) => {
    const { WebSocketImpl, runLog } = startOnFakePage(t, { hash: "#L20" });
    loadLines(WebSocketImpl, 100);
    const atLine = runLog.scrollTop;
    WebSocketImpl.latest.serverSends(logChunk(2, manyLines(101, 500)));
    assert.equal(runLog.scrollTop, atLine);
  });

  test("a link to a line of a log still arriving holds the view there until the reader scrolls to the end", (t) => {
    const { WebSocketImpl, runLog } = startOnFakePage(t, { hash: "#L1" });
    WebSocketImpl.latest.serverOpens();
    // Shorter than the view at first: "at the bottom" would otherwise mean following.
    WebSocketImpl.latest.serverSends(logChunk(1, manyLines(1, 2)));
    WebSocketImpl.latest.serverSends(logChunk(2, manyLines(3, 500)));
    assert.equal(runLog.scrollTop, 0);
    assert.match(rowOfLine(runLog, 1).className, /\blog-line-target\b/);

    runLog.scrollTop = runLog.scrollHeight;
    runLog.dispatch("scroll");
    WebSocketImpl.latest.serverSends(logChunk(3, manyLines(503, 100)));
    assert.equal(runLog.scrollTop, runLog.scrollHeight - runLog.clientHeight, "following again");
  });

  test("a failed run's page opens at the line where it went wrong, unless the address names a line", (t) => {
    const opened = startOnFakePage(t, { status: "failed", errorLine: 300 });
    loadLines(opened.WebSocketImpl, 1000);
    assert.match(rowOfLine(opened.runLog, 300).className, /\blog-line-target\b/);

    t.mock.timers.reset();
    const linked = startOnFakePage(t, { status: "failed", errorLine: 300, hash: "#L700" });
    loadLines(linked.WebSocketImpl, 1000);
    assert.match(rowOfLine(linked.runLog, 700).className, /\blog-line-target\b/);
    assert.equal(rowOfLine(linked.runLog, 300), undefined, "line 300 is far out of view");
  });

  test("goToLine moves the highlight to another line", (t) => {
    const { WebSocketImpl, runLog, handle } = startOnFakePage(t, { hash: "#L5" });
    loadLines(WebSocketImpl, 3000);
    handle.goToLine(2000);
    assert.match(rowOfLine(runLog, 2000).className, /\blog-line-target\b/);
    assert.equal(rowOfLine(runLog, 5), undefined);
  });

  test("folding a stage hides its lines under its header, including lines that arrive later", (t) => {
    const { WebSocketImpl, runLog, handle } = startOnFakePage(t);
    WebSocketImpl.latest.serverOpens();
    WebSocketImpl.latest.serverSends(logChunk(1, "cloned\n", "checkout"));
    WebSocketImpl.latest.serverSends(logChunk(2, "step 1\n", "build"));
    handle.toggleStage("build");
    WebSocketImpl.latest.serverSends(logChunk(3, "step 2\n", "build"));
    assert.deepEqual(renderedText(runLog), ["── checkout ──", "cloned", "── build ──"]);
    const toggle = renderedRows(runLog)[2].querySelector(".log-fold");
    assert.equal(toggle.getAttribute("aria-expanded"), "false");

    handle.toggleStage("build");
    assert.deepEqual(renderedText(runLog), ["── checkout ──", "cloned", "── build ──", "step 1", "step 2"]);
  });

  test("the fold button of a stage header folds and unfolds it", (t) => {
    const { WebSocketImpl, runLog, handle } = startOnFakePage(t);
    loadLines(WebSocketImpl, 3, "test");
    const toggle = renderedRows(runLog)[0].querySelector(".log-fold");
    runLog.dispatch("click", { target: toggle });
    assert.equal(handle.isFolded("test"), true);
    assert.deepEqual(renderedText(runLog), ["── test ──"]);
  });

  test("going to a line of a folded stage unfolds it", (t) => {
    const { WebSocketImpl, runLog, handle } = startOnFakePage(t);
    loadLines(WebSocketImpl, 50);
    handle.toggleStage("build");
    handle.goToLine(42);
    assert.equal(handle.isFolded("build"), false);
    assert.match(rowOfLine(runLog, 42).className, /\blog-line-target\b/);
  });

  function sectionChunk(seq, text, section, stage = "test") {
    return { type: "log", seq, stage, section, text };
  }

  // The test stage's own line, then steps unit and integration side by side.
  function loadSections(WebSocketImpl) {
    const socket = WebSocketImpl.latest;
    socket.serverOpens();
    socket.serverSends(sectionChunk(1, "image app: built\n", ""));
    socket.serverSends(sectionChunk(2, "unit 1\nunit 2\n", "unit"));
    socket.serverSends(sectionChunk(3, "integration 1\n", "integration"));
    socket.serverSends(sectionChunk(4, "unit 3\n", "unit"));
  }

  test("a section's header is a row with the log-section class, a fold button and no number", (t) => {
    const { WebSocketImpl, runLog } = startOnFakePage(t);
    loadSections(WebSocketImpl);
    const header = renderedRows(runLog)[2];
    assert.equal(header.className, "log-line log-section");
    assert.equal(header.dataset.section, "unit");
    assert.equal(header.dataset.line, undefined);
    assert.equal(header.querySelector(".log-number"), null);
    const toggle = header.querySelector(".log-fold");
    assert.deepEqual([toggle.dataset.stage, toggle.dataset.section], ["test", "unit"]);
    assert.equal(toggle.getAttribute("aria-label"), "Fold unit of the test stage");
    assert.equal(rowOfLine(runLog, 2).dataset.section, "unit");
  });

  test("folding a section hides its lines under each of its headers, lines arriving later too", (t) => {
    const { WebSocketImpl, runLog, handle } = startOnFakePage(t);
    loadSections(WebSocketImpl);
    handle.toggleSection("test", "unit");
    WebSocketImpl.latest.serverSends(sectionChunk(5, "unit 4\n", "unit"));
    WebSocketImpl.latest.serverSends(sectionChunk(6, "integration 2\n", "integration"));
    assert.deepEqual(renderedText(runLog), [
      "── test ──",
      "image app: built",
      "── test › unit ──",
      "── test › integration ──",
      "integration 1",
      "── test › unit, continued ──",
      "── test › integration, continued ──",
      "integration 2",
    ]);
    assert.equal(handle.isFolded("test", "unit"), true);
    assert.equal(handle.isFolded("test"), false);
    const toggles = renderedRows(runLog).map((row) => row.querySelector(".log-fold")).filter(Boolean);
    assert.deepEqual(
      toggles.map((toggle) => [toggle.dataset.section ?? null, toggle.getAttribute("aria-expanded")]),
      [[null, "true"], ["unit", "false"], ["integration", "true"], ["unit", "false"], ["integration", "true"]],
    );

    handle.toggleSection("test", "unit");
    assert.deepEqual(renderedText(runLog).filter((text) => text.startsWith("unit")), ["unit 1", "unit 2", "unit 3", "unit 4"]);
  });

  test("the fold button of a section header folds that section and keeps that header where it was", (t) => {
    const { WebSocketImpl, runLog, handle } = startOnFakePage(t);
    const socket = WebSocketImpl.latest;
    socket.serverOpens();
    socket.serverSends(sectionChunk(1, manyLines(1, 100), "unit"));
    socket.serverSends(sectionChunk(2, "integration 1\n", "integration"));
    socket.serverSends(sectionChunk(3, manyLines(102, 100), "unit"));
    socket.serverSends(sectionChunk(4, manyLines(202, 100), "integration"));
    // Rows: the stage header, unit's, 100 lines, integration's, 1 line, then unit's again.
    runLog.scrollTop = 104 * LINE_HEIGHT;
    runLog.dispatch("scroll");
    const continued = renderedRows(runLog).find((row) => row.querySelector(".log-text").textContent === "── test › unit, continued ──");

    runLog.dispatch("click", { target: continued.querySelector(".log-fold") });

    assert.equal(handle.isFolded("test", "unit"), true);
    // Above it now: the stage header, unit's header, integration's and its one line.
    assert.equal(runLog.scrollTop, 4 * LINE_HEIGHT, "the header clicked stays at the top");
    assert.equal(renderedText(runLog)[4], "── test › unit, continued ──");
  });

  test("folding the stage hides its sections' headers too, and its own header stays", (t) => {
    const { WebSocketImpl, runLog, handle } = startOnFakePage(t);
    loadSections(WebSocketImpl);
    handle.toggleSection("test", "integration");
    handle.toggleStage("test");
    assert.deepEqual(renderedText(runLog), ["── test ──"]);
    handle.toggleStage("test");
    assert.equal(handle.isFolded("test", "integration"), true, "the section stays folded inside");
    assert.ok(!renderedText(runLog).includes("integration 1"));
  });

  test("going to a line of a folded section unfolds the section, and the stage around it", (t) => {
    const { WebSocketImpl, runLog, handle } = startOnFakePage(t);
    loadSections(WebSocketImpl);
    handle.toggleSection("test", "integration");
    handle.toggleStage("test");
    handle.goToLine(4); // "integration 1"
    assert.equal(handle.isFolded("test", "integration"), false);
    assert.equal(handle.isFolded("test"), false);
    assert.equal(rowOfLine(runLog, 4).querySelector(".log-text").textContent, "integration 1");
    assert.match(rowOfLine(runLog, 4).className, /\blog-line-target\b/);
  });

  test("a search match in a folded section unfolds it and is shown", async (t) => {
    const server = fakeSearchServer([4]);
    const { WebSocketImpl, runLog, handle } = startOnFakePage(t, { fetchImpl: server.fetchImpl });
    loadSections(WebSocketImpl);
    handle.toggleSection("test", "integration");
    await handle.search("integration 1");
    assert.equal(handle.isFolded("test", "integration"), false);
    assert.match(rowOfLine(runLog, 4).className, /\blog-line-current\b/);
  });

  test("a search asks the server for the whole log's matches and shows the first below the top of the view", async (t) => {
    const server = fakeSearchServer([10, 2500, 4000]);
    const { WebSocketImpl, runLog, handle } = startOnFakePage(t, { fetchImpl: server.fetchImpl });
    loadLines(WebSocketImpl, 5000);
    runLog.scrollTop = 2000 * LINE_HEIGHT;
    runLog.dispatch("scroll");

    const matches = await handle.search("line 2500");

    assert.deepEqual(server.asked, ["https://ci.example.com/projects/web/runs/3/log/search?q=line+2500"]);
    assert.equal(matches.currentLine, 2500);
    assert.match(rowOfLine(runLog, 2500).className, /\blog-line-match\b.*\blog-line-current\b/);
    assert.ok(!rowOfLine(runLog, 2501).className.includes("log-line-match"));
  });

  test("next and previous bring each match into view in turn, going round", async (t) => {
    const server = fakeSearchServer([10, 2500, 4000]);
    const { WebSocketImpl, runLog, handle } = startOnFakePage(t, { fetchImpl: server.fetchImpl });
    loadLines(WebSocketImpl, 5000);
    runLog.scrollTop = 0;
    runLog.dispatch("scroll");
    await handle.search("needle");
    assert.match(rowOfLine(runLog, 10).className, /\blog-line-current\b/);

    const visited = [handle.step(1), handle.step(1), handle.step(1), handle.step(-1)];

    assert.deepEqual(visited, [2500, 4000, 10, 4000]);
    assert.match(rowOfLine(runLog, 4000).className, /\blog-line-current\b/);
    assert.equal(rowOfLine(runLog, 10), undefined, "line 10 is out of view again");
  });

  test("a search the server refuses is reported, not swallowed", async (t) => {
    const fetchImpl = async () => ({ ok: false, status: 400, json: async () => ({}) });
    const { handle } = startOnFakePage(t, { fetchImpl });
    await assert.rejects(handle.search("x"), /the server answered 400/);
  });
});
