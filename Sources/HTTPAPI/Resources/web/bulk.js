// The bulk tab: a pasted or uploaded CSV, its preview (rows with line numbers and categories,
// counts, plan limits, storage, estimate), the batch options and start; then the batch view with
// per-job progress and errors, Cancel, Retry failed, Resume, the fix-password dialog and the report.
import { api, query } from "./api.js";
import { $, bar, bytes, count, duration, fill, h, show, when } from "./dom.js";
import { clearErrors, showError, showPlainError } from "./errors.js";
import { bindPresets } from "./presets.js";
import { cell } from "./progress.js";
import { pager } from "./history.js";
import { can } from "./app.js";

const CATEGORY_LABELS = {
  valid: "Valid",
  invalid_source_email: "Invalid source email",
  invalid_destination: "Unknown destination mailbox",
  missing_password: "Missing password",
  invalid_server: "Invalid server",
  duplicate_row: "Duplicate row",
  over_plan_limit: "Over the plan's limit",
};
const STRATEGY_LABELS = {
  all: "All folders",
  standard: "Inbox and the special folders (Sent, Drafts, Junk, Trash, Archive)",
  inbox_only: "Inbox only",
};

let rules = null;
let previewed = null;
let batchTimer = null;
let watched = null;
let listPage = 1;
let dialogJob = null;

export function setupBulk(state) {
  rules = state.rules;
  const form = $("#bulk-form");
  bindPresets(rules, {
    select: $("#bulk-provider"),
    host: $("#bulk-host"),
    port: $("#bulk-port"),
    security: $("#bulk-security"),
    hint: $("#bulk-provider-hint"),
  });
  $("#bulk-strategy").replaceChildren(
    ...rules.folder_strategies.map((id) => h("option", { value: id, text: STRATEGY_LABELS[id] ?? id })),
  );
  $("#bulk-per-row").addEventListener("change", () => {
    show($("#bulk-server"), !$("#bulk-per-row").checked);
    invalidate();
  });
  $("#bulk-file").addEventListener("change", readFile);
  for (const id of ["bulk-data", "bulk-provider", "bulk-host", "bulk-port", "bulk-security"]) {
    $(`#${id}`).addEventListener("input", invalidate);
  }
  $("#bulk-preview").addEventListener("click", () => preview(form));
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    start(form);
  });

  const filter = $("#batches-status");
  filter.replaceChildren(
    h("option", { value: "", text: "All statuses" }),
    ...rules.batch_statuses.map((status) => h("option", { value: status.id, text: status.label })),
  );
  filter.addEventListener("change", () => {
    listPage = 1;
    loadBatches();
  });
  $("#batches-refresh").addEventListener("click", () => loadBatches());

  const dialog = $("#password-dialog");
  $("#password-form").addEventListener("submit", savePassword);
  $("#password-cancel").addEventListener("click", () => dialog.close());
  // Whatever closes the dialog, the typed password goes with it.
  dialog.addEventListener("close", () => {
    $("#new-password").value = "";
    dialogJob = null;
  });
}

async function readFile(event) {
  const file = event.currentTarget.files?.[0];
  if (!file) return;
  const status = $("#bulk-status");
  if (file.size > 2 * 1024 * 1024) {
    status.textContent = "The file is larger than 2 MB, the most a batch takes.";
    return;
  }
  $("#bulk-data").value = await file.text();
  event.currentTarget.value = "";
  status.textContent = `Read ${file.name}.`;
  invalidate();
}

/** The CSV or its server changed: the preview no longer says what a start would do. */
function invalidate() {
  previewed = null;
  show($("#bulk-result"), false);
}

function sourceFields() {
  const body = { data: $("#bulk-data").value, per_row_server: $("#bulk-per-row").checked, provider: $("#bulk-provider").value };
  if (!body.per_row_server) {
    const host = $("#bulk-host").value.trim();
    if (host) body.source_host = host;
    if ($("#bulk-port").value !== "") body.source_port = Number($("#bulk-port").value);
    body.source_security = $("#bulk-security").value;
  }
  return body;
}

async function preview(form) {
  clearErrors(form);
  const button = $("#bulk-preview");
  const status = $("#bulk-status");
  const body = { ...sourceFields(), check_logins: $("#bulk-check-logins").checked };
  button.disabled = true;
  status.textContent = body.check_logins ? "Checking the rows and their logins…" : "Checking the rows…";
  try {
    const result = await api("POST", "/api/v1/migrations/bulk/preview", { body });
    status.textContent = "";
    previewed = sourceFields();
    renderPreview(result.data);
  } catch (error) {
    status.textContent = "";
    invalidate();
    showError(form, $("#bulk-error"), error);
  } finally {
    button.disabled = false;
  }
}

function fact(term, value) {
  return h("div", {}, h("dt", { text: term }), h("dd", { text: value }));
}

function renderPreview(data) {
  const counts = data.counts ?? {};
  const storage = data.storage ?? {};
  const plan = data.plan ?? {};
  const estimate = data.estimate ?? {};
  fill(
    $("#bulk-summary"),
    h(
      "dl",
      { className: "facts", id: "bulk-counts" },
      fact("Rows", count(counts.total)),
      rules.row_categories.map((category) => h("div", { dataset: { category } }, h("dt", { text: CATEGORY_LABELS[category] ?? category }), h("dd", { text: count(counts[category] ?? 0) }))),
    ),
    data.login_checks
      ? h("p", { className: "help", text: `Logins tried: ${data.login_checks.ok} worked, ${data.login_checks.failed} refused, ${data.login_checks.not_checked} not checked in time.` })
      : null,
    h(
      "dl",
      { className: "facts" },
      fact("Plan", plan.name ?? "—"),
      fact("Rows per batch", count(plan.rows_per_batch)),
      fact("Jobs at once (account)", count(plan.jobs_at_once)),
      fact("Jobs at once (service)", count(plan.service_jobs_at_once)),
      fact("Storage pool", bytes(storage.pool_bytes)),
      fact("Used", storage.measured ? `${bytes(storage.used_bytes)} (${storage.used_percent}%)` : "not measured"),
      fact("Free", bytes(storage.free_bytes)),
      fact("Batches pause at", `${storage.pause_threshold_percent}% (${bytes(storage.pause_threshold_bytes)})`),
      fact("Estimated time", duration(estimate.seconds)),
    ),
    estimate.assumptions?.length
      ? h("details", {}, h("summary", { text: "How the estimate is made" }), h("ul", {}, estimate.assumptions.map((line) => h("li", { text: line }))))
      : null,
  );
  fill(
    $("#bulk-rows"),
    h(
      "div",
      { className: "table-wrap" },
      h(
        "table",
        { className: "stack", id: "preview-rows" },
        h("caption", { text: "Rows" }),
        h("thead", {}, h("tr", {}, ["Line", "Source", "Destination", "Category", "Message", "Login"].map((name) => h("th", { scope: "col", text: name })))),
        h(
          "tbody",
          {},
          (data.rows ?? []).map((row) =>
            h(
              "tr",
              { dataset: { line: String(row.line), category: row.category }, className: row.category === "valid" ? "" : "bad" },
              cell("Line", String(row.line)),
              cell("Source", row.source_email ?? "—"),
              cell("Destination", row.destination_email ?? "—"),
              cell("Category", h("span", { className: `category category-${row.category}`, text: CATEGORY_LABELS[row.category] ?? row.category })),
              cell("Message", row.message ?? "—"),
              cell("Login", loginCell(row.login_check)),
            ),
          ),
        ),
      ),
    ),
  );
  $("#bulk-start").disabled = !(counts.valid > 0);
  show($("#bulk-result"));
  $("#bulk-result-title").scrollIntoView({ block: "nearest" });
}

function loginCell(check) {
  if (!check) return "—";
  if (check.status === "ok") return "OK";
  return h("span", {}, h("strong", { text: check.status === "failed" ? `Refused (${check.error_code})` : "Not checked" }), check.message ? ` ${check.message}` : "", check.hint ? h("span", { className: "hint-text", text: ` ${check.hint}` }) : null);
}

async function start(form) {
  clearErrors(form);
  if (!previewed) {
    showPlainError($("#bulk-start-error"), { code: "preview_needed", message: "Preview the CSV first." });
    return;
  }
  const body = { ...previewed, folder_strategy: $("#bulk-strategy").value, skip_duplicates: $("#bulk-skip").checked };
  const name = $("#bulk-name").value.trim();
  if (name) body.name = name;
  const since = $("#bulk-since").value;
  if (since) body.import_since = since;
  const button = $("#bulk-start");
  button.disabled = true;
  try {
    const result = await api("POST", "/api/v1/migrations/bulk", { body });
    // The CSV holds passwords: once sent, it leaves the page.
    $("#bulk-data").value = "";
    $("#bulk-name").value = "";
    invalidate();
    watchBatch(result.data);
    loadBatches();
  } catch (error) {
    showError(form, $("#bulk-start-error"), error);
  } finally {
    button.disabled = false;
  }
}

// MARK: The batch view

export function stopBatch() {
  clearTimeout(batchTimer);
  batchTimer = null;
  watched = null;
}

function watchBatch(batch) {
  stopBatch();
  watched = batch.id;
  show($("#batch"));
  show($("#batch-error"), false);
  renderBatch(batch);
  $("#batch").scrollIntoView({ block: "start" });
  scheduleBatch(batch);
}

function scheduleBatch(batch) {
  clearTimeout(batchTimer);
  if (batch.poll_hint_seconds === null || batch.poll_hint_seconds === undefined) return;
  const id = batch.id;
  batchTimer = setTimeout(() => refreshBatch(id), Math.max(1, Number(batch.poll_hint_seconds)) * 1000);
}

async function refreshBatch(id, { once = false } = {}) {
  if (watched !== id) return;
  try {
    const result = await api("GET", `/api/v1/migrations/bulk/${id}`);
    if (watched !== id) return;
    show($("#batch-error"), false);
    renderBatch(result.data);
    if (!once) scheduleBatch(result.data);
  } catch (error) {
    if (watched !== id) return;
    showPlainError($("#batch-error"), error);
    if (!once && error.status !== 404 && error.status !== 401) {
      batchTimer = setTimeout(() => refreshBatch(id), Math.max(5, Number(error.retryAfter) || 10) * 1000);
    }
  }
}

function renderBatch(batch) {
  const counts = batch.counts ?? {};
  fill(
    $("#batch-body"),
    h("p", { className: "progress-head" }, h("span", { text: `Batch #${batch.id}: ${batch.name}` }), " ", h("span", { className: `status status-${batch.status}`, id: "batch-status", text: batch.status_label })),
    h("div", { className: "overall" }, bar(batch.progress, "Batch progress"), h("span", { className: "percent", text: `${batch.progress}%` })),
    batch.status === "paused"
      ? h("div", { className: "notice warning", attrs: { role: "status" } }, h("strong", { text: "Paused for storage." }), ` ${batch.pause_reason ?? ""} Free up space in the account's mailboxes or upgrade the plan, then Resume.`)
      : null,
    h(
      "dl",
      { className: "facts" },
      fact("Jobs", count(counts.jobs)),
      fact("Queued", count(counts.pending)),
      fact("Running", count(counts.running)),
      fact("Completed", count(counts.completed)),
      fact("Failed", count(counts.failed)),
      fact("Cancelled", count(counts.cancelled)),
      fact("Messages", `${count(batch.imported_messages)} imported, ${count(batch.skipped_duplicates)} skipped, ${count(batch.failed_messages)} failed of ${count(batch.total_messages)}`),
      fact("Folders", STRATEGY_LABELS[batch.folder_strategy] ?? batch.folder_strategy),
      fact("Started", when(batch.created_at)),
      fact("Finished", when(batch.finished_at)),
    ),
    h(
      "div",
      { className: "table-wrap" },
      h(
        "table",
        { className: "stack", id: "batch-jobs" },
        h("caption", { text: "Jobs" }),
        h("thead", {}, h("tr", {}, ["Line", "Destination", "Source", "Status", "Progress", "Messages", "Error", "Actions"].map((name) => h("th", { scope: "col", text: name })))),
        h("tbody", {}, (batch.jobs ?? []).map((job) => jobRow(batch, job))),
      ),
    ),
  );
  fill($("#batch-actions"), batchActions(batch));
}

function jobRow(batch, job) {
  const canFix = can("migrations:write") && rules.job_actions.update_password.includes(job.status);
  return h(
    "tr",
    { dataset: { job: String(job.id), line: String(job.line ?? ""), status: job.status } },
    cell("Line", String(job.line ?? "—")),
    cell("Destination", job.mailbox_email ?? `mailbox #${job.mailbox_id}`),
    cell("Source", job.source_email),
    cell("Status", h("span", { className: `status status-${job.status}`, text: job.status_label })),
    cell("Progress", h("span", { className: "inline-bar" }, bar(job.progress, `Line ${job.line} progress`), ` ${job.progress}%`)),
    cell("Messages", `${count(job.imported_messages)} of ${count(job.total_messages)}`),
    cell(
      "Error",
      job.error_code
        ? h("span", { className: "error-cell" }, h("strong", { text: job.error_message ?? "" }), job.error_hint ? h("span", { className: "hint-text", text: ` ${job.error_hint}` }) : null, h("code", { text: ` ${job.error_code}` }))
        : "—",
    ),
    cell(
      "Actions",
      canFix
        ? h("button", { type: "button", className: "secondary", text: "Fix password", attrs: { "aria-label": `Fix the password of line ${job.line}` }, on: { click: () => openPasswordDialog(batch, job) } })
        : "—",
    ),
  );
}

function batchActions(batch) {
  const buttons = [];
  const allowed = rules.batch_actions;
  const act = (label, method, suffix, after, className = "secondary") =>
    h("button", {
      type: "button",
      className,
      text: label,
      on: {
        click: async (event) => {
          if (label === "Delete" && !window.confirm(`Delete batch #${batch.id} and its jobs?`)) return;
          const button = event.currentTarget;
          button.disabled = true;
          try {
            const result = await api(method, `/api/v1/migrations/bulk/${batch.id}${suffix}`);
            after(result);
            loadBatches();
          } catch (error) {
            showPlainError($("#batch-error"), error);
            button.disabled = false;
          }
        },
      },
    });
  if (can("migrations:write")) {
    if (allowed.resume.includes(batch.status)) buttons.push(act("Resume", "POST", ":resume", (r) => watchBatch(r.data)));
    if (allowed.retry.includes(batch.status) && (batch.counts?.failed ?? 0) + (batch.counts?.cancelled ?? 0) > 0) {
      buttons.push(act("Retry failed", "POST", ":retry", (r) => watchBatch(r.data)));
    }
    if (allowed.cancel.includes(batch.status)) buttons.push(act("Cancel batch", "POST", ":cancel", (r) => watchBatch(r.data)));
    if (allowed.delete.includes(batch.status)) {
      buttons.push(
        act("Delete", "DELETE", "", () => {
          stopBatch();
          show($("#batch"), false);
        }, "danger"),
      );
    }
  }
  buttons.push(h("button", { type: "button", className: "secondary", id: "report-download", text: "Download report (CSV)", on: { click: () => downloadReport(batch.id) } }));
  buttons.push(h("button", { type: "button", className: "secondary", text: "Close", on: { click: () => { stopBatch(); show($("#batch"), false); } } }));
  return buttons;
}

/** The report is behind the bearer token, so it is fetched and handed to the browser as a file. */
async function downloadReport(id) {
  try {
    const response = await api("GET", `/api/v1/migrations/bulk/${id}/report.csv`, { raw: true });
    const blob = await response.blob();
    const url = URL.createObjectURL(blob);
    const link = h("a", { href: url, download: `batch-${id}-report.csv`, hidden: true });
    document.body.append(link);
    link.click();
    link.remove();
    setTimeout(() => URL.revokeObjectURL(url), 30_000);
  } catch (error) {
    showPlainError($("#batch-error"), error);
  }
}

function openPasswordDialog(batch, job) {
  const form = $("#password-form");
  clearErrors(form);
  dialogJob = { batch: batch.id, job: job.id };
  $("#password-dialog-text").textContent =
    `Line ${job.line}: ${job.source_email} → ${job.mailbox_email ?? ""}. ${job.error_message ?? ""} ` +
    "The new password is used when the batch's failed jobs are retried.";
  $("#new-password").value = "";
  $("#password-dialog").showModal();
  $("#new-password").focus();
}

async function savePassword(event) {
  event.preventDefault();
  const form = event.currentTarget;
  clearErrors(form);
  if (!dialogJob) return;
  const { batch, job } = dialogJob;
  const input = $("#new-password");
  if (!input.value) {
    showError(form, null, { code: "validation_error", message: "Type the new password.", fields: { source_password: "is required" } });
    return;
  }
  try {
    await api("PATCH", `/api/v1/migrations/bulk/${batch}/jobs/${job}/password`, { body: { source_password: input.value } });
    input.value = "";
    $("#password-dialog").close();
    $("#batch-error").hidden = true;
    await refreshBatch(batch, { once: true });
  } catch (error) {
    showError(form, $("#password-form-error"), error);
  }
}

// MARK: The list of batches

export async function loadBatches() {
  if (!can("migrations:read")) return;
  try {
    const result = await api("GET", `/api/v1/migrations/bulk${query({ status: $("#batches-status").value, page: listPage, per_page: 20 })}`);
    show($("#batches-error"), false);
    const list = $("#batches-list");
    if (!result.data?.length) {
      fill(list, h("p", { className: "help", text: "No batches yet." }));
    } else {
      fill(
        list,
        h(
          "div",
          { className: "table-wrap" },
          h(
            "table",
            { className: "stack", id: "batches-table" },
            h("caption", { className: "visually-hidden", text: "Batches" }),
            h("thead", {}, h("tr", {}, ["Batch", "Status", "Progress", "Jobs", "Created", ""].map((name) => h("th", { scope: "col", text: name })))),
            h(
              "tbody",
              {},
              result.data.map((batch) =>
                h(
                  "tr",
                  { dataset: { id: String(batch.id), status: batch.status } },
                  cell("Batch", `#${batch.id} ${batch.name}`),
                  cell("Status", h("span", { className: `status status-${batch.status}`, text: batch.status_label })),
                  cell("Progress", h("span", { className: "inline-bar" }, bar(batch.progress, `Batch #${batch.id} progress`), ` ${batch.progress}%`)),
                  cell("Jobs", `${count(batch.counts?.completed)} completed, ${count(batch.counts?.failed)} failed of ${count(batch.counts?.jobs)}`),
                  cell("Created", when(batch.created_at)),
                  cell("", h("button", { type: "button", className: "secondary", text: "View", attrs: { "aria-label": `View batch #${batch.id}` }, on: { click: () => openBatch(batch.id) } })),
                ),
              ),
            ),
          ),
        ),
      );
    }
    pager($("#batches-pager"), result.meta, (next) => {
      listPage = next;
      loadBatches();
    });
  } catch (error) {
    showPlainError($("#batches-error"), error);
  }
}

async function openBatch(id) {
  try {
    const result = await api("GET", `/api/v1/migrations/bulk/${id}`);
    watchBatch(result.data);
  } catch (error) {
    showPlainError($("#batches-error"), error);
  }
}
