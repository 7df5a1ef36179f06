// The single-import wizard: provider, credentials and Test connection, folders, options, destination, Start.
import { api } from "./api.js";
import { $, count, fill, h, show } from "./dom.js";
import { clearErrors, showError } from "./errors.js";
import { bindPresets } from "./presets.js";
import { watchMigration } from "./progress.js";
import { can } from "./app.js";

let folders = null;

export function setupWizard(state) {
  const form = $("#wizard");
  bindPresets(state.rules, {
    select: $("#provider"),
    host: $("#source_host"),
    port: $("#source_port"),
    security: $("#source_security"),
    hint: $("#provider-hint"),
  });
  $("#test-connection").addEventListener("click", () => testConnection(form));
  $("#folders-all").addEventListener("click", () => setAll(true));
  $("#folders-none").addEventListener("click", () => setAll(false));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    start(form);
  });
  // Changing the source after a test means the folder list may no longer be right.
  for (const id of ["provider", "source_host", "source_port", "source_security", "source_email", "source_username"]) {
    $(`#${id}`).addEventListener("change", () => {
      if (folders) resetFolders();
    });
  }
}

function source() {
  const body = {
    provider: $("#provider").value,
    source_host: $("#source_host").value.trim(),
    source_port: $("#source_port").value === "" ? undefined : Number($("#source_port").value),
    source_security: $("#source_security").value,
    source_email: $("#source_email").value.trim(),
    source_password: $("#source_password").value,
  };
  const username = $("#source_username").value.trim();
  if (username) body.source_username = username;
  if (!body.source_host) delete body.source_host;
  return body;
}

/** Where a refused connection belongs: a refused login beside the password, an unreachable host beside the host. */
function connectionField(error) {
  if (error.code !== "connection_failed") return null;
  if (error.reason === "authentication_failed") return "source_password";
  if (["host_unreachable", "connection_timed_out", "private_host_blocked", "tls_failed"].includes(error.reason)) return "source_host";
  return null;
}

async function testConnection(form) {
  clearErrors(form);
  const button = $("#test-connection");
  const status = $("#test-status");
  button.disabled = true;
  status.textContent = "Connecting…";
  try {
    const result = await api("POST", "/api/v1/migrations/test-connection", { body: source() });
    status.textContent = "Connected.";
    showFolders(result.folders ?? {});
  } catch (error) {
    status.textContent = "";
    resetFolders();
    showError(form, $("#test-error"), error, connectionField);
  } finally {
    button.disabled = false;
  }
}

function showFolders(found) {
  folders = found;
  const names = Object.keys(found);
  const total = names.reduce((sum, name) => sum + (Number(found[name]) || 0), 0);
  $("#folders-summary").textContent = `${names.length} folders, ${count(total)} messages. Choose the folders to import.`;
  fill(
    $("#folder-list"),
    names.map((name, index) =>
      h(
        "div",
        { className: "check folder" },
        h("input", { type: "checkbox", id: `folder-${index}`, checked: true, value: name, dataset: { folder: name } }),
        h("label", { htmlFor: `folder-${index}` }, h("span", { className: "folder-name", text: name }), h("span", { className: "folder-count", text: `${count(found[name])} messages` })),
      ),
    ),
  );
  for (const id of ["step-folders", "step-options", "step-destination"]) show($(`#${id}`));
  loadMailboxes();
  $("#folder-list input")?.focus();
}

function resetFolders() {
  folders = null;
  $("#folder-list").replaceChildren();
  for (const id of ["step-folders", "step-options", "step-destination"]) show($(`#${id}`), false);
  $("#test-status").textContent = "";
}

function setAll(checked) {
  for (const box of document.querySelectorAll("#folder-list input[type=checkbox]")) box.checked = checked;
}

/** The account's mailboxes as a list, when the token may read them; else the id is typed. */
async function loadMailboxes() {
  const select = $("#mailbox_id");
  const number = $("#mailbox_id_number");
  const help = $("#mailbox_id-help");
  if (!can("mailboxes:read")) {
    show(select, false);
    show(number);
    const label = $("label[for=mailbox_id]");
    if (label) label.htmlFor = "mailbox_id_number";
    help.textContent = "The id of the destination mailbox (this token cannot list mailboxes).";
    return;
  }
  try {
    const mailboxes = [];
    for (let page = 1; page <= 10; page += 1) {
      const result = await api("GET", `/api/v1/mailboxes?page=${page}&per_page=100`);
      mailboxes.push(...(result.data ?? []));
      if (!result.meta || page >= result.meta.last_page) break;
    }
    const previous = select.value;
    select.replaceChildren(
      h("option", { value: "", text: "Choose a mailbox" }),
      ...mailboxes.map((mailbox) => h("option", { value: String(mailbox.id), text: mailbox.email })),
    );
    if (previous) select.value = previous;
    help.textContent = mailboxes.length ? "" : "The account has no mailboxes yet; add one first.";
  } catch (error) {
    help.textContent = `The mailboxes could not be listed: ${error.message}`;
  }
}

function mailboxID() {
  const value = $("#mailbox_id").hidden ? $("#mailbox_id_number").value : $("#mailbox_id").value;
  return value === "" ? undefined : Number(value);
}

async function start(form) {
  clearErrors(form);
  if (!folders) {
    showError(form, $("#start-error"), { code: "validation_error", message: "Test the connection first.", fields: {} });
    return;
  }
  const boxes = Array.from(document.querySelectorAll("#folder-list input[type=checkbox]"));
  const chosen = boxes.filter((box) => box.checked).map((box) => box.dataset.folder);
  const body = {
    ...source(),
    mailbox_id: mailboxID(),
    skip_duplicates: $("#skip_duplicates").checked,
  };
  // All folders: leave the list out, so folders created meanwhile come along too.
  if (chosen.length !== boxes.length) body.selected_folders = chosen;
  const since = $("#import_since").value;
  if (since) body.import_since = since;
  const target = $("#target_password").value;
  if (target) body.target_password = target;
  const button = $("#start-import");
  button.disabled = true;
  try {
    const result = await api("POST", "/api/v1/migrations", { body });
    // The passwords were sent once; none stays in the page.
    $("#source_password").value = "";
    $("#target_password").value = "";
    resetFolders();
    watchMigration(result.data);
  } catch (error) {
    showError(form, $("#start-error"), error, connectionField);
  } finally {
    button.disabled = false;
  }
}
