// The queue: what CS works on, oldest first, as GET /v1/queue answers it. Every list in the
// answer is one kind of case (appeals today, complaints when the engine has them), shown in
// one table; filters only narrow what is shown. A new event on the log refreshes it.

import { get } from "./api.js";
import { badge, h, orderHref, table, time, timeLeft, words } from "./dom.js";
import { follow } from "./stream.js";

const FILTERS = [
  ["state", "State"],
  ["reason", "Reason"],
  ["waits_on", "Waiting on"],
];
const chosen = { state: "", reason: "", waits_on: "" };

const singular = (key) => key.replace(/s$/, "");
const since = (item) => item.opened_at ?? item.filed_at ?? item.created_at ?? "";

/** Every case of every kind the queue answered, oldest first. */
function cases(answer) {
  const all = [];
  for (const [key, list] of Object.entries(answer)) {
    if (!Array.isArray(list)) continue;
    const kind = singular(key);
    for (const item of list) all.push({ ...item, kind, id: item[kind] ?? item.id });
  }
  return all.sort((a, b) => since(a).localeCompare(since(b)));
}

function row(item, now) {
  const overdue = item.due_at && new Date(item.due_at).getTime() < now;
  const target = item.order ? orderHref(item.order) : null;
  return h(
    "tr",
    { class: overdue ? "overdue" : "", "data-case": item.id },
    h(
      "td",
      { class: "nowrap" },
      target ? h("a", { href: target }, item.id) : item.id,
      h("div", { class: "sub" }, [item.kind, item.order].filter(Boolean).join(" · order ")),
    ),
    h("td", {}, words(item.reason ?? "—")),
    h("td", {}, item.side ?? "—"),
    h("td", {}, badge(item.state)),
    h("td", {}, words(item.waits_on ?? "—"), item.waits_for ? h("div", { class: "sub" }, `from ${item.waits_for}`) : null),
    h("td", {}, item.agent ?? h("span", { class: "muted" }, "unassigned")),
    h("td", { class: "nowrap" }, time(since(item))),
    h("td", { class: "nowrap" }, time(item.due_at)),
    h("td", { class: "num" }, timeLeft(item.due_at, now)),
  );
}

export async function renderQueue(main) {
  let items = [];
  const status = h("span", { class: "live", role: "status" }, "Connecting…");
  const count = h("span", { class: "muted" });
  const filters = h("form", { class: "filters", "aria-label": "Filters" });
  const body = h("div", { class: "table-wrap" });

  function drawFilters() {
    filters.replaceChildren(
      ...FILTERS.map(([field, label]) => {
        const values = [...new Set([...items.map((i) => i[field]).filter(Boolean), chosen[field]])]
          .filter(Boolean)
          .sort();
        const select = h(
          "select",
          { id: `filter-${field}`, name: field },
          h("option", { value: "" }, "All"),
          values.map((v) => h("option", { value: v, selected: v === chosen[field] }, words(v))),
        );
        select.addEventListener("change", () => {
          chosen[field] = select.value;
          draw();
        });
        return h("div", { class: "field" }, h("label", { for: select.id }, label), select);
      }),
    );
  }

  function draw() {
    const now = Date.now();
    const shown = items.filter((i) => FILTERS.every(([f]) => !chosen[f] || i[f] === chosen[f]));
    const overdue = shown.filter((i) => i.due_at && new Date(i.due_at).getTime() < now).length;
    count.textContent = `${shown.length} open${overdue ? `, ${overdue} overdue` : ""}`;
    body.replaceChildren(
      table(
        "Open cases, oldest first",
        ["Case", "Reason", "Side", "State", "Waiting on", "Agent", "Opened", "Due", "Time left"],
        shown.map((item) => row(item, now)),
        items.length ? "No case matches these filters." : "The queue is empty.",
      ),
    );
  }

  async function refresh() {
    items = cases(await get("/v1/queue", { limit: 500 }));
    drawFilters();
    draw();
  }

  await refresh();
  main.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, "Queue"), count, status),
    filters,
    body,
  );

  let pending = null;
  const stop = follow(
    () => {
      clearTimeout(pending);
      pending = setTimeout(() => refresh().catch(() => {}), 200);
    },
    (state) => {
      status.textContent = { live: "● Live", reconnecting: "Reconnecting…", off: "Not live" }[state];
      status.className = `live ${state}`;
    },
  );
  const clock = setInterval(draw, 15_000);
  return () => {
    stop();
    clearTimeout(pending);
    clearInterval(clock);
  };
}
