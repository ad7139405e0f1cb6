// Building the page: elements from data (text is always set as text, never parsed as HTML),
// and times in the reader's own time zone with the UTC time on hover.

export function h(tag, attributes = {}, ...children) {
  const element = document.createElement(tag);
  for (const [name, value] of Object.entries(attributes)) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) element.addEventListener(name.slice(2), value);
    else if (name === "class") element.className = value;
    else if (value === true) element.setAttribute(name, "");
    else element.setAttribute(name, value);
  }
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : String(child));
  }
  return element;
}

export const words = (name) => String(name).replaceAll("_", " ");
export const sentence = (name) => {
  const text = words(name);
  return text.charAt(0).toUpperCase() + text.slice(1);
};

const LOCAL = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "short" });
const PRECISE = new Intl.DateTimeFormat(undefined, { dateStyle: "medium", timeStyle: "medium" });

/**
 * A time as the reader's local time, its exact UTC value in the title and datetime;
 * `precise` adds the seconds (events of one minute are told apart in a timeline).
 */
export function time(value, precise = false) {
  if (!value) return h("span", { class: "muted" }, "—");
  const at = new Date(value);
  const text = (precise ? PRECISE : LOCAL).format(at);
  return h("time", { datetime: at.toISOString(), title: `${at.toISOString()} (UTC)` }, text);
}

/** A span of milliseconds in the largest two units: "2d 4h", "3h 12m", "45s". */
export function span(ms) {
  let seconds = Math.floor(Math.abs(ms) / 1000);
  const parts = [];
  for (const [unit, size] of [["d", 86400], ["h", 3600], ["m", 60], ["s", 1]]) {
    if (seconds >= size || (unit === "s" && !parts.length)) {
      parts.push(`${Math.floor(seconds / size)}${unit}`);
      seconds %= size;
    }
    if (parts.length === 2) break;
  }
  return parts.join(" ");
}

/** How long until `due`, or how long past it, marked so the eye and a screen reader see it. */
export function timeLeft(due, now = Date.now()) {
  if (!due) return h("span", { class: "muted" }, "no deadline");
  const left = new Date(due).getTime() - now;
  if (left < 0) return h("span", { class: "overdue-badge" }, `Overdue ${span(left)}`);
  return h("span", { class: left < 3600_000 ? "soon" : "" }, span(left));
}

export function badge(state, kind = "") {
  return h("span", { class: `badge state-${state} ${kind}` }, words(state ?? "—"));
}

export const orderHref = (order) => `#/orders/${encodeURIComponent(order)}`;
export const traderHref = (name) => `#/traders/${encodeURIComponent(name)}`;

/** A definition list of label → value pairs; values may be nodes. Empty values are left out. */
export function facts(pairs) {
  return h(
    "dl",
    { class: "facts" },
    pairs
      .filter(([, value]) => value !== undefined && value !== null && value !== "")
      .map(([label, value]) => [h("dt", {}, label), h("dd", {}, value)]),
  );
}

export function card(title, ...children) {
  return h("section", { class: "card", "aria-label": title }, h("h2", {}, title), ...children);
}

export function table(caption, headings, rows, empty = "Nothing here.") {
  if (!rows.length) return h("p", { class: "muted empty" }, empty);
  return h(
    "table",
    {},
    h("caption", { class: "visually-hidden" }, caption),
    h("thead", {}, h("tr", {}, headings.map((text) => h("th", { scope: "col" }, text)))),
    h("tbody", {}, rows),
  );
}

export function problemBox(problem) {
  return h(
    "div",
    { class: "problem", role: "alert" },
    h(
      "p",
      { class: "problem-head" },
      h("strong", {}, "Refused: "),
      h("code", { class: "code", "data-code": problem.code }, problem.code),
      problem.rule ? h("span", { class: "rule" }, `rule ${problem.rule}`) : null,
    ),
    h("p", {}, problem.detail || problem.title),
    problem.errors.length
      ? h("ul", {}, problem.errors.map((e) => h("li", {}, h("code", {}, e.field), ": ", e.message)))
      : null,
    problem.status === 409 || problem.status === 403 || problem.status === 422
      ? h("p", { class: "muted" }, "Nothing was recorded.")
      : null,
  );
}

/** Any value of a view the console has no special place for (new fields show as they come). */
export function plain(value) {
  if (value === null || value === undefined) return "—";
  if (typeof value === "object") return JSON.stringify(value);
  if (typeof value === "string" && /^\d{4}-\d\d-\d\dT[\d:.]+(Z|[+-]\d\d:\d\d)$/.test(value)) {
    return time(value);
  }
  return String(value);
}
