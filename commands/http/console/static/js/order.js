// One order's page: its state and its appeal's, parties and their sanctions, amounts,
// evidence, every event, and what the signed-in person may do now. Everything shown is an
// answer of the service; after an action the page is read again rather than patched.

import { find, get, openapi, path } from "./api.js";
import { actionPanel, isOpen } from "./actions.js";
import {
  badge,
  card,
  facts,
  h,
  orderHref,
  plain,
  sentence,
  table,
  time,
  traderHref,
  words,
} from "./dom.js";
import { follow } from "./stream.js";

const ORDER_SHOWN = new Set([
  "order", "version", "state", "seller", "buyer", "asset", "amount", "price", "reference_price",
  "fiat", "fiat_amount", "paid_amount", "payment_method", "instant", "payment_deadline",
  "created_at", "paid_at", "closed_at", "cancel_reason", "open_appeal", "appeals", "escrow",
]);
const APPEAL_SHOWN = new Set([
  "appeal", "version", "order", "state", "reason", "rule", "opener", "side", "agent", "outcome",
  "refund_state", "refunds", "top_up", "evidence_count", "proof_deadline", "freeze_deadline",
  "opened_at", "closed_at",
]);

/** Fields a view has that this page has no place for yet (clawback, complaints, ...). */
const extras = (view, shown) =>
  Object.entries(view)
    .filter(([key]) => !shown.has(key))
    .map(([key, value]) => [sentence(key), plain(value)]);

async function read(id, me) {
  const [order, timeline, allowed] = await Promise.all([
    get(`/v1/orders/${path(id)}`),
    get(`/v1/orders/${path(id)}/timeline`),
    get(`/v1/orders/${path(id)}/allowed`),
  ]);
  const appealId = order.open_appeal ?? order.appeals.at(-1);
  const [appeal, appealAllowed, seller, buyer, doc] = await Promise.all([
    appealId ? get(`/v1/appeals/${path(appealId)}`) : null,
    appealId ? get(`/v1/appeals/${path(appealId)}/allowed`) : null,
    find(`/v1/traders/${path(order.seller)}`),
    find(`/v1/traders/${path(order.buyer)}`),
    openapi(),
  ]);
  const states = doc.components.schemas.OrderState?.enum ?? [];
  return { me, order, timeline, allowed, appeal, appealAllowed, seller, buyer, states };
}

function stateStrip(states, current) {
  if (!states.length) return null;
  return h(
    "ol",
    { class: "strip", "aria-label": "Order states" },
    states.map((s) =>
      h("li", { class: s === current ? "current" : "", "aria-current": s === current ? "step" : null }, words(s)),
    ),
  );
}

function orderCard({ order }) {
  const e = order.escrow;
  return card(
    "Order",
    facts([
      ["Seller", h("a", { href: traderHref(order.seller) }, order.seller)],
      ["Buyer", h("a", { href: traderHref(order.buyer) }, order.buyer)],
      ["Amount", `${order.amount} ${order.asset}`],
      ["Price", `${order.price} ${order.fiat} (reference ${order.reference_price})`],
      ["Fiat amount", `${order.fiat_amount} ${order.fiat}`],
      ["Paid amount", order.paid_amount === null ? null : `${order.paid_amount} ${order.fiat}`],
      ["Payment method", `${words(order.payment_method)}${order.instant ? " (instant)" : ""}`],
      ["Escrow", `locked ${e.locked} · released ${e.released} · returned ${e.returned} ${order.asset}`],
      ["Created", time(order.created_at)],
      ["Payment deadline", time(order.payment_deadline)],
      ["Paid", order.paid_at ? time(order.paid_at) : null],
      ["Closed", order.closed_at ? time(order.closed_at) : null],
      ["Cancel reason", order.cancel_reason ? words(order.cancel_reason) : null],
      ...extras(order, ORDER_SHOWN),
    ]),
  );
}

function appealCard({ order, appeal }) {
  if (!appeal) return card("Appeal", h("p", { class: "muted empty" }, "No appeal on this order."));
  const earlier = order.appeals.filter((a) => a !== appeal.appeal);
  return card(
    `Appeal ${appeal.appeal}`,
    facts([
      ["State", badge(appeal.state)],
      ["Reason", `${words(appeal.reason)} (rule ${appeal.rule})`],
      ["Opened by", `${appeal.opener} (${appeal.side})`],
      ["Agent", appeal.agent ?? h("span", { class: "muted" }, "unassigned")],
      ["Outcome", appeal.outcome ? words(appeal.outcome) : null],
      ["Refund", appeal.refund_state ? words(appeal.refund_state) : null],
      ["Top-up", appeal.top_up ? words(appeal.top_up) : null],
      ["Proof deadline", appeal.proof_deadline ? time(appeal.proof_deadline) : null],
      ["Freeze deadline", appeal.freeze_deadline ? time(appeal.freeze_deadline) : null],
      ["Opened", time(appeal.opened_at)],
      ["Closed", appeal.closed_at ? time(appeal.closed_at) : null],
      ["Earlier appeals", earlier.length ? earlier.join(", ") : null],
      ...extras(appeal, APPEAL_SHOWN),
    ]),
    appeal.refunds.length
      ? table(
          "Refunds",
          ["Amount", "State", "Reported", "Reference", "Note"],
          appeal.refunds.map((r) =>
            h("tr", {}, [r.amount, words(r.state), r.reported ?? "—", r.reference ?? "—", r.note ?? "—"].map((v) => h("td", {}, v))),
          ),
        )
      : null,
  );
}

function sanctionsCard({ order, seller, buyer }) {
  const party = (role, name, record) => {
    if (!record) return h("li", {}, h("strong", {}, `${role} ${name}`), h("span", { class: "muted" }, " — not visible to you"));
    return h(
      "li",
      {},
      h("a", { href: traderHref(name) }, h("strong", {}, `${role} ${name}`)),
      " ",
      record.can_trade ? h("span", { class: "badge ok" }, "can trade") : h("span", { class: "badge bad" }, "cannot trade"),
      record.sanctions.length
        ? h(
            "ul",
            { class: "sanctions" },
            record.sanctions.map((s) =>
              h("li", {}, words(s.kind), s.severity ? ` (${s.severity})` : "", " since ", time(s.since), " — ", s.expires_at ? ["ends ", time(s.expires_at)] : "until lifted"),
            ),
          )
        : h("div", { class: "muted" }, "No sanction in play."),
    );
  };
  return card("Parties and sanctions", h("ul", { class: "parties" }, party("Seller", order.seller, seller), party("Buyer", order.buyer, buyer)));
}

function evidenceCard({ timeline }) {
  const items = timeline.events.filter((e) => e.event.endsWith("EvidenceAdded"));
  return card(
    "Evidence",
    items.length
      ? h(
          "ul",
          { class: "evidence" },
          items.map((e) =>
            h(
              "li",
              {},
              h("div", {}, h("strong", {}, e.actor ?? "—"), " · ", time(e.at), " · ", e.ref),
              h("div", {}, e.fields.description ?? ""),
              (e.fields.refs ?? []).length ? h("div", { class: "refs" }, e.fields.refs.map((r) => h("code", {}, r))) : null,
            ),
          ),
        )
      : h("p", { class: "muted empty" }, "No evidence yet."),
  );
}

function details(fields) {
  return Object.entries(fields)
    .filter(([key, value]) => key !== "ref" && value !== null && !(Array.isArray(value) && !value.length))
    .map(([key, value]) => h("span", { class: "kv" }, `${words(key)}: `, h("b", {}, Array.isArray(value) ? value.join(", ") : plain(value))));
}

function timelineCard({ timeline }) {
  return card(
    "Timeline",
    table(
      "Every event of the order and its appeals, oldest first",
      ["Time", "Stream", "Event", "Actor", "Rule", "Details"],
      timeline.events.map((e) =>
        h(
          "tr",
          { "data-event": e.event },
          h("td", { class: "nowrap" }, time(e.at, true)),
          h("td", { class: "nowrap" }, `${e.kind} ${e.ref}`),
          h("td", {}, e.event),
          h("td", {}, e.actor ?? "—"),
          h("td", {}, e.rule ?? "—"),
          h("td", { class: "details" }, details(e.fields)),
        ),
      ),
    ),
  );
}

export async function renderOrder(main, me, id) {
  let data = await read(id, me);
  let flash = null;
  let panel = null;
  const notice = h("div", { class: "notice", role: "status" });

  function draw() {
    const { order, appeal, allowed, appealAllowed } = data;
    panel = actionPanel(
      [
        { commands: appealAllowed?.commands ?? [], context: { appeal: appeal?.appeal } },
        {
          commands: allowed.commands,
          context: { order: order.order },
          choices: { open_appeal: { reason: allowed.appeal_reasons } },
        },
      ],
      () => {
        flash = null;
        main.querySelector(".flash")?.remove();
      },
      async (answer) => {
        flash = `Recorded: ${answer.recorded.map((r) => `${r.stream} ${r.event}${r.rule ? ` (${r.rule})` : ""}`).join(", ")}.`;
        await refresh();
        main.querySelector(".flash")?.focus();
      },
    );
    main.replaceChildren(
      h(
        "div",
        { class: "page-head" },
        h("h1", {}, "Order ", h("span", { class: "id" }, order.order)),
        h("span", { id: "order-state" }, badge(order.state, "big")),
        appeal ? h("span", { class: "muted" }, "appeal") : null,
        appeal ? h("span", { id: "appeal-state" }, badge(appeal.state, "big")) : null,
      ),
      stateStrip(data.states, order.state),
      notice,
      h(
        "div",
        { class: "columns" },
        h("div", { class: "column" }, orderCard(data), appealCard(data), sanctionsCard(data), evidenceCard(data)),
        h(
          "div",
          { class: "column side" },
          card("Actions", flash ? h("p", { class: "flash", role: "status", tabindex: "-1" }, flash) : null, panel),
        ),
      ),
      timelineCard(data),
    );
  }

  async function refresh() {
    data = await read(id, me);
    notice.replaceChildren();
    draw();
  }

  draw();
  if (me.role === "trader") return () => {};

  const ours = (event) =>
    event.ref === id || (data.order.appeals ?? []).includes(event.ref) || event.data?.order === id;
  let pending = null;
  return follow((event) => {
    if (!ours(event)) return;
    if (panel && isOpen(panel)) {
      notice.replaceChildren(
        "This order changed since the page was read. ",
        h("a", { href: orderHref(id), onclick: (e) => { e.preventDefault(); refresh(); } }, "Show the new state"),
      );
      return;
    }
    clearTimeout(pending);
    pending = setTimeout(() => refresh().catch(() => {}), 200);
  });
}
