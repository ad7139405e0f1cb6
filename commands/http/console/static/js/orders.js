// Orders, newest first, a page at a time (GET /v1/orders): a trader's own only, as the
// service answers a trader; everyone else's for CS and the platform.

import { get, openapi } from "./api.js";
import { badge, h, orderHref, table, time, traderHref, words } from "./dom.js";

const PAGE = 50;

export function ordersTable(orders, empty) {
  return table(
    "Orders",
    ["Order", "State", "Seller", "Buyer", "Amount", "Fiat", "Appeal", "Created"],
    orders.map((o) =>
      h(
        "tr",
        { "data-order": o.order },
        h("td", { class: "nowrap" }, h("a", { href: orderHref(o.order) }, o.order)),
        h("td", {}, badge(o.state)),
        h("td", {}, h("a", { href: traderHref(o.seller) }, o.seller)),
        h("td", {}, h("a", { href: traderHref(o.buyer) }, o.buyer)),
        h("td", { class: "num" }, `${o.amount} ${o.asset}`),
        h("td", { class: "num" }, `${o.fiat_amount} ${o.fiat}`),
        h("td", {}, o.open_appeal ?? (o.appeals ? `${o.appeals} closed` : "—")),
        h("td", { class: "nowrap" }, time(o.created_at)),
      ),
    ),
    empty,
  );
}

export async function renderOrders(main, me) {
  const states = (await openapi()).components.schemas.OrderState?.enum ?? [];
  const select = h(
    "select",
    { id: "filter-order-state", name: "state" },
    h("option", { value: "" }, "All"),
    states.map((s) => h("option", { value: s }, words(s))),
  );
  const list = h("div", { class: "table-wrap" });
  const more = h("button", { type: "button", class: "ghost", hidden: true }, "More orders");
  let next = null;
  let shown = [];

  async function load(reset) {
    if (reset) {
      shown = [];
      next = null;
    }
    const page = await get("/v1/orders", { state: select.value, limit: PAGE, after: next });
    shown = shown.concat(page.orders);
    next = page.next;
    more.hidden = !next;
    list.replaceChildren(ordersTable(shown, "No orders."));
  }

  select.addEventListener("change", () => load(true));
  more.addEventListener("click", () => load(false));
  await load(true);
  main.replaceChildren(
    h("div", { class: "page-head" }, h("h1", {}, me.role === "trader" ? "My orders" : "Orders")),
    h(
      "form",
      { class: "filters", "aria-label": "Filters" },
      h("div", { class: "field" }, h("label", { for: select.id }, "State"), select),
    ),
    list,
    more,
  );
}
