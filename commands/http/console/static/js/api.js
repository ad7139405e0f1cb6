// The HTTP interface, as the console uses it: the bearer token of this tab, GETs for views,
// POST /v1/commands/... for actions. Every refusal comes back as a Problem (problem+json).

const TOKEN = "escrow.console.token";

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN);
  },
  signIn(token) {
    sessionStorage.setItem(TOKEN, token);
  },
  signOut() {
    sessionStorage.removeItem(TOKEN);
  },
};

export class Problem extends Error {
  constructor(status, body) {
    super(body.detail || body.title || `HTTP ${status}`);
    this.status = status;
    this.code = body.code || `http_${status}`;
    this.rule = body.rule || null;
    this.title = body.title || this.code.replaceAll("_", " ");
    this.detail = body.detail || "";
    this.errors = body.errors || [];
  }
}

export function authHeaders() {
  return { Authorization: `Bearer ${session.token}` };
}

async function answer(response) {
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Problem(response.status, body);
  return body;
}

export async function get(path, params = {}) {
  const query = new URLSearchParams(
    Object.entries(params).filter(([, v]) => v !== undefined && v !== null && v !== ""),
  ).toString();
  const url = query ? `${path}?${query}` : path;
  return answer(await fetch(url, { headers: authHeaders(), cache: "no-store" }));
}

/** GET, with a 404 (not there, or not the caller's to see) answered as null. */
export async function find(path, params) {
  try {
    return await get(path, params);
  } catch (e) {
    if (e instanceof Problem && e.status === 404) return null;
    throw e;
  }
}

export async function command(name, body, idempotencyKey) {
  const headers = { ...authHeaders(), "Content-Type": "application/json" };
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  const response = await fetch(`/v1/commands/${encodeURIComponent(name)}`, {
    method: "POST",
    headers,
    body: JSON.stringify(body),
  });
  return answer(response);
}

let documentPromise = null;

/** The OpenAPI document: the one description of every command's fields. */
export function openapi() {
  documentPromise ??= fetch("/openapi.json").then(answer);
  return documentPromise;
}

export const path = (...parts) => parts.map(encodeURIComponent).join("/");
