// The console's shell: sign-in, the navigation, and which view the address (#/...) shows.
// Each view renders into <main> and returns what stops its timers and streams when it goes.

import { get, Problem, session } from "./api.js";
import { h, problemBox, traderHref } from "./dom.js";
import { renderOrder } from "./order.js";
import { renderOrders } from "./orders.js";
import { renderQueue } from "./queue.js";
import { renderTrader } from "./trader.js";

const main = document.getElementById("main");
const nav = document.getElementById("nav");
const who = document.getElementById("who");
let me = null;
let leave = () => {};

const ROUTES = [
  [/^#\/queue$/, () => renderQueue(main, me)],
  [/^#\/orders$/, () => renderOrders(main, me)],
  [/^#\/orders\/([^/]+)$/, (id) => renderOrder(main, me, id)],
  [/^#\/traders\/([^/]+)$/, (name) => renderTrader(main, me, name)],
];

function home() {
  return me.role === "trader" ? "#/orders" : "#/queue";
}

function signInForm(problem) {
  nav.hidden = true;
  who.replaceChildren();
  const input = h("input", {
    id: "token",
    name: "token",
    type: "password",
    autocomplete: "off",
    spellcheck: "false",
    required: true,
  });
  const form = h(
    "form",
    { class: "card signin", "aria-labelledby": "signin-title" },
    h("h1", { id: "signin-title" }, "Sign in"),
    h(
      "p",
      { class: "muted" },
      "Paste the token your administrator gave you. It is kept for this browser tab only.",
    ),
    h("label", { for: "token" }, "Token"),
    input,
    problem ? problemBox(problem) : null,
    h("button", { type: "submit", class: "primary" }, "Sign in"),
  );
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    session.signIn(input.value.trim());
    await start();
  });
  main.replaceChildren(form);
  input.focus();
}

function shell() {
  const links = [
    me.role === "trader" ? null : ["#/queue", "Queue"],
    ["#/orders", me.role === "trader" ? "My orders" : "Orders"],
    me.role === "trader" ? [traderHref(me.name), "My record"] : null,
  ].filter(Boolean);
  nav.replaceChildren(...links.map(([href, text]) => h("a", { href, "data-nav": href }, text)));
  nav.hidden = false;
  who.replaceChildren(
    h("span", { class: "who-name" }, me.name),
    h("span", { class: "who-role" }, me.role),
    h("button", { type: "button", class: "ghost", onclick: signOut }, "Sign out"),
  );
}

function signOut() {
  session.signOut();
  me = null;
  leave();
  leave = () => {};
  history.replaceState(null, "", location.pathname);
  signInForm();
}

async function route() {
  if (!me) return;
  leave();
  leave = () => {};
  const hash = ["", "#", "#/"].includes(location.hash) ? home() : location.hash;
  if (hash !== location.hash) history.replaceState(null, "", hash);
  for (const a of nav.querySelectorAll("a")) {
    a.toggleAttribute("aria-current", hash.startsWith(a.dataset.nav));
  }
  const found = ROUTES.map(([pattern, view]) => [hash.match(pattern), view]).find(([m]) => m);
  main.replaceChildren(h("p", { class: "muted loading" }, "Loading…"));
  try {
    if (!found) throw new Problem(404, { code: "not_found", detail: "no such page" });
    const [match, view] = found;
    leave = (await view(...match.slice(1).map(decodeURIComponent))) || (() => {});
  } catch (problem) {
    if (problem instanceof Problem && problem.status === 401) return signOut();
    main.replaceChildren(h("h1", {}, "Not available"), problemBox(asProblem(problem)));
  }
  main.focus({ preventScroll: true });
}

function asProblem(error) {
  return error instanceof Problem ? error : new Problem(0, { code: "error", detail: String(error) });
}

async function start() {
  if (!session.token) return signInForm();
  try {
    me = await get("/v1/me");
  } catch (problem) {
    session.signOut();
    return signInForm(asProblem(problem));
  }
  shell();
  await route();
}

window.addEventListener("hashchange", route);
start();
