// The REST API client: the bearer token lives in sessionStorage only (this tab, until Sign out or
// the tab closes), never in a URL, a cookie or the persistent local storage.

const TOKEN_KEY = "mailporter.token";

export const session = {
  get token() {
    return sessionStorage.getItem(TOKEN_KEY);
  },
  set token(value) {
    sessionStorage.setItem(TOKEN_KEY, value);
  },
  clear() {
    sessionStorage.clear();
  },
};

/** An error answered by the API (SPEC.md §7), or a network failure worded the same way. */
export class APIError extends Error {
  constructor(status, error) {
    super(error.message || "The request failed.");
    this.status = status;
    this.code = error.code || "error";
    this.hint = error.hint || null;
    this.requestID = error.request_id || null;
    this.retryable = Boolean(error.retryable);
    this.fields = error.fields && typeof error.fields === "object" ? error.fields : {};
    this.reason = error.reason || null;
    this.retryAfter = error.retry_after ?? null;
  }
}

/** A fresh Idempotency-Key for one user action (crypto.randomUUID needs a secure context; this does not). */
function idempotencyKey() {
  const bytes = crypto.getRandomValues(new Uint8Array(16));
  return "ui-" + Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
}

/**
 * Calls `/api/v1…`. Resolves to the parsed JSON (null for 204), rejects with APIError.
 * `token` overrides the stored one (sign-in tries a token before keeping it).
 */
export async function api(method, path, { body, token, raw } = {}) {
  const headers = { Accept: raw ? "text/csv, application/json" : "application/json" };
  const bearer = token ?? session.token;
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (method !== "GET") headers["Idempotency-Key"] = idempotencyKey();
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method,
      headers,
      body: body === undefined ? undefined : JSON.stringify(body),
      credentials: "omit",
      cache: "no-store",
      referrerPolicy: "no-referrer",
    });
  } catch {
    throw new APIError(0, {
      code: "network_error",
      message: "The server could not be reached.",
      hint: "Check your connection and that the service is running, then try again.",
      retryable: true,
    });
  }
  if (raw && response.ok) return response;
  if (response.status === 204) return null;
  let payload = null;
  try {
    payload = await response.json();
  } catch {
    payload = null;
  }
  if (!response.ok) {
    throw new APIError(
      response.status,
      payload?.error ?? { code: `http_${response.status}`, message: `The server answered ${response.status}.` },
    );
  }
  return payload;
}

/** Query string from an object, skipping empty values. */
export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "") search.set(key, String(value));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
