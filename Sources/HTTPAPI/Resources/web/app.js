// The Import page: sign-in, the account and its scopes, and the tabs. Each tab lives in its own module.
import { api, session } from "./api.js";
import { $, $$, fill, h, show } from "./dom.js";
import { clearErrors, showError } from "./errors.js";
import { setupWizard } from "./wizard.js";
import { setupProgress, stopProgress } from "./progress.js";
import { setupHistory, loadHistory } from "./history.js";
import { setupBulk, loadBatches, stopBatch } from "./bulk.js";

/** What the page knows after sign-in: rules from the server, the caller from /api/v1/me. */
export const state = { rules: null, me: null, scopes: new Set() };

export const can = (scope) => state.scopes.has(scope);

async function boot() {
  try {
    const response = await fetch("/ui/rules.json", { credentials: "omit", cache: "no-store" });
    if (!response.ok) throw new Error(`rules: ${response.status}`);
    state.rules = await response.json();
  } catch {
    const message = $("#boot-error");
    message.textContent = "The page could not load its settings from the server. Reload to try again.";
    show(message);
    return;
  }
  setupWizard(state);
  setupProgress(state);
  setupHistory(state);
  setupBulk(state);
  $("#signin-form").addEventListener("submit", signIn);
  $("#sign-out").addEventListener("click", signOut);
  for (const tab of $$("[role=tab]")) {
    tab.addEventListener("click", () => selectTab(tab.id));
    tab.addEventListener("keydown", tabKeys);
  }
  if (session.token) {
    try {
      await enter(await api("GET", "/api/v1/me"));
      return;
    } catch {
      session.clear();
    }
  }
  showSignIn();
}

function showSignIn() {
  show($("#app"), false);
  show($("#whoami"), false);
  show($("#signin"));
  $("#token").focus();
}

async function signIn(event) {
  event.preventDefault();
  const form = event.currentTarget;
  clearErrors(form);
  const input = $("#token");
  const token = input.value.trim();
  if (!token) {
    showError(form, null, { code: "validation_error", message: "Paste a token.", fields: { token: "is required" } });
    return;
  }
  try {
    const me = await api("GET", "/api/v1/me", { token });
    session.token = token;
    input.value = "";
    await enter(me);
  } catch (error) {
    showError(form, null, error, () => "token");
  }
}

function signOut() {
  stopProgress();
  stopBatch();
  session.clear();
  // A fresh page: nothing typed (passwords, CSV rows) or fetched survives the sign-out.
  window.location.replace("/");
}

async function enter(me) {
  state.me = me;
  state.scopes = new Set(me.capabilities?.effective_scopes ?? []);
  const held = me.token?.scopes ?? [];
  const plan = me.plan ?? {};
  $("#account-id").textContent = `#${me.account?.id}`;
  $("#account-email").textContent = me.account?.notification_email ?? "—";
  $("#account-plan").textContent = plan.name ?? me.account?.plan ?? "—";
  $("#token-name").textContent = `${me.token?.name ?? ""} (${me.token?.prefix ?? ""}…)`;
  fill(
    $("#account-scopes"),
    state.scopes.size ? h("ul", { className: "chips" }, [...state.scopes].map((scope) => h("li", { text: scope }))) : "none",
  );
  $("#whoami-text").textContent = `Account #${me.account?.id} · ${plan.name ?? ""} plan`;

  const notice = $("#plan-notice");
  const blocked = held.filter((scope) => !state.scopes.has(scope));
  if (plan.migrations_allowed === false) {
    fill(
      notice,
      h("strong", { text: `Migrations are not available on the ${plan.name} plan.` }),
      ` The ${plan.name} plan does not include the migration tool, so this token's migration scopes are blocked by the plan` +
        (blocked.length ? ` (${blocked.join(", ")})` : "") +
        ". Upgrade to the Starter plan or higher to import email.",
    );
    show(notice);
  } else if (!can("migrations:read") && !can("migrations:write")) {
    fill(
      notice,
      h("strong", { text: "This token cannot use migrations." }),
      " It lacks the migrations:read and migrations:write scopes. Create a token with them to import email.",
    );
    show(notice);
  } else if (!can("migrations:write")) {
    fill(notice, "This token can only read imports (no migrations:write scope): starting, cancelling, retrying and deleting are hidden.");
    show(notice);
  } else {
    show(notice, false);
  }

  // Hide what the scopes do not allow.
  for (const element of $$("[data-scope]")) show(element, can(element.dataset.scope));
  show($("#signin"), false);
  show($("#app"));
  show($("#whoami"));
  const first = $$("[role=tab]").find((tab) => !tab.hidden);
  $(".tabs").hidden = !first;
  if (first) selectTab(first.id);
}

export function selectTab(id) {
  for (const tab of $$("[role=tab]")) {
    const selected = tab.id === id;
    tab.setAttribute("aria-selected", String(selected));
    tab.tabIndex = selected ? 0 : -1;
    show($(`#${tab.getAttribute("aria-controls")}`), selected && !tab.hidden);
  }
  if (id === "tab-history") loadHistory();
  if (id === "tab-bulk") loadBatches();
}

function tabKeys(event) {
  const tabs = $$("[role=tab]").filter((tab) => !tab.hidden);
  const index = tabs.indexOf(event.currentTarget);
  let next = null;
  if (event.key === "ArrowRight") next = tabs[(index + 1) % tabs.length];
  if (event.key === "ArrowLeft") next = tabs[(index - 1 + tabs.length) % tabs.length];
  if (event.key === "Home") next = tabs[0];
  if (event.key === "End") next = tabs[tabs.length - 1];
  if (next) {
    event.preventDefault();
    selectTab(next.id);
    next.focus();
  }
}

boot();
