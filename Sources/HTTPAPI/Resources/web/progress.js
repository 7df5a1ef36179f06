// Live progress of one migration: the overall bar, a bar per folder, throughput and ETA. Polls
// every poll_hint_seconds and stops at a terminal status (poll_hint_seconds null).
import { api } from "./api.js";
import { $, bar, count, duration, fill, h, show, when } from "./dom.js";
import { showPlainError } from "./errors.js";
import { can } from "./app.js";

let current = null;
let timer = null;
let samples = [];
let rules = null;

export function setupProgress(state) {
  rules = state.rules;
}

export function stopProgress() {
  clearTimeout(timer);
  timer = null;
  current = null;
  samples = [];
}

/** Shows `record` and keeps it up to date. */
export function watchMigration(record) {
  stopProgress();
  current = record.id;
  const panel = $("#progress");
  show(panel);
  show($("#progress-error"), false);
  render(record);
  panel.scrollIntoView({ block: "start" });
  $("#progress-title").focus?.();
  schedule(record);
}

function schedule(record) {
  clearTimeout(timer);
  const seconds = record.poll_hint_seconds;
  if (seconds === null || seconds === undefined) return;
  const id = record.id;
  timer = setTimeout(() => refresh(id), Math.max(1, Number(seconds)) * 1000);
}

async function refresh(id) {
  if (current !== id) return;
  try {
    const result = await api("GET", `/api/v1/migrations/${id}`);
    if (current !== id) return;
    show($("#progress-error"), false);
    render(result.data);
    schedule(result.data);
  } catch (error) {
    if (current !== id) return;
    showPlainError($("#progress-error"), error);
    // A passing network failure or rate limit: try again later; a gone migration: stop.
    if (error.status !== 404 && error.status !== 401) {
      timer = setTimeout(() => refresh(id), Math.max(5, Number(error.retryAfter) || 10) * 1000);
    }
  }
}

/** Messages per second over the last minute of samples, else since the start. */
function throughput(record) {
  const done = record.imported_messages + record.skipped_duplicates + record.failed_messages;
  const now = Date.now();
  samples.push({ at: now, done });
  samples = samples.filter((sample) => now - sample.at <= 60_000);
  const first = samples[0];
  if (samples.length > 1 && now > first.at && done > first.done) return (done - first.done) / ((now - first.at) / 1000);
  const started = Date.parse(record.started_at);
  if (Number.isFinite(started) && done > 0) {
    const end = record.finished_at ? Date.parse(record.finished_at) : now;
    if (end > started) return done / ((end - started) / 1000);
  }
  return null;
}

function statusChip(status, label) {
  return h("span", { className: `status status-${status}`, text: label });
}

function render(record) {
  const terminal = record.poll_hint_seconds === null || record.poll_hint_seconds === undefined;
  const rate = throughput(record);
  const done = record.imported_messages + record.skipped_duplicates + record.failed_messages;
  const remaining = Math.max(0, record.total_messages - done);
  const eta = !terminal && rate && rate > 0 && record.total_messages > 0 ? duration(remaining / rate) : terminal ? "—" : "estimating…";

  fill(
    $("#progress-body"),
    h(
      "p",
      { className: "progress-head" },
      h("span", { text: `Import #${record.id}: ${record.source_email} (${record.source_host}) → ${record.mailbox_email ?? `mailbox #${record.mailbox_id}`}` }),
      " ",
      statusChip(record.status, record.status_label),
    ),
    h("div", { className: "overall" }, bar(record.progress, "Overall progress"), h("span", { className: "percent", id: "overall-percent", text: `${record.progress}%` })),
    h(
      "dl",
      { className: "facts" },
      fact("Messages", `${count(done)} of ${count(record.total_messages)}`),
      fact("Imported", count(record.imported_messages)),
      fact("Skipped duplicates", count(record.skipped_duplicates)),
      fact("Failed", count(record.failed_messages)),
      fact("Throughput", rate ? `${rate.toFixed(1)} messages/s` : "—"),
      fact("Time left", eta),
      fact("Started", when(record.started_at)),
      fact("Finished", when(record.finished_at)),
    ),
    record.error_code ? errorBlock(record) : null,
    folderTable(record.folders ?? []),
  );
  renderActions(record);
}

function fact(term, value) {
  return h("div", {}, h("dt", { text: term }), h("dd", { text: value }));
}

export function errorBlock(record) {
  return h(
    "div",
    { className: "notice error", attrs: { role: "note" } },
    h("strong", { text: record.error_message ?? record.error_code }),
    record.error_hint ? h("p", { text: record.error_hint }) : null,
    h("p", { className: "code", text: `Error code: ${record.error_code}` }),
  );
}

function folderTable(folders) {
  if (!folders.length) return h("p", { className: "help", text: "The folder plan appears once the import is prepared." });
  return h(
    "div",
    { className: "table-wrap" },
    h(
      "table",
      { className: "stack", id: "folder-progress" },
      h("caption", { text: "Folders" }),
      h("thead", {}, h("tr", {}, ["Folder", "Status", "Progress", "Expected", "Imported", "Skipped", "Failed"].map((name) => h("th", { scope: "col", text: name })))),
      h(
        "tbody",
        {},
        folders.map((folder) => {
          const done = folder.imported + folder.skipped + folder.failed;
          const percent = folder.expected > 0 ? Math.floor((100 * done) / folder.expected) : folder.status === "completed" ? 100 : 0;
          return h(
            "tr",
            { dataset: { folder: folder.name } },
            cell("Folder", h("span", { className: "folder-name", text: folder.destination && folder.destination !== folder.name ? `${folder.name} → ${folder.destination}` : folder.name })),
            cell("Status", folder.status),
            cell("Progress", bar(percent, `${folder.name} progress`)),
            cell("Expected", count(folder.expected)),
            cell("Imported", count(folder.imported)),
            cell("Skipped", count(folder.skipped)),
            cell("Failed", count(folder.failed)),
          );
        }),
      ),
    ),
  );
}

export function cell(label, content) {
  return h("td", { dataset: { label } }, content);
}

/** Cancel, Retry and Delete as SPEC.md §4 allows them from this status (rules.json). */
export function migrationActions(record, after) {
  if (!can("migrations:write")) return [];
  const allowed = rules.migration_actions;
  const buttons = [];
  const act = (label, method, path, done) =>
    h("button", {
      type: "button",
      className: label === "Delete" ? "danger" : "secondary",
      text: label,
      attrs: { "aria-label": `${label} import #${record.id}` },
      on: {
        click: async (event) => {
          const button = event.currentTarget;
          if (label === "Delete" && !window.confirm(`Delete import #${record.id}? Its record and stored credentials are removed.`)) return;
          button.disabled = true;
          try {
            const result = await api(method, path);
            done(result);
          } catch (error) {
            after.error(error);
            button.disabled = false;
          }
        },
      },
    });
  if (allowed.cancel.includes(record.status)) buttons.push(act("Cancel", "POST", `/api/v1/migrations/${record.id}:cancel`, (r) => after.changed(r.data)));
  if (allowed.retry.includes(record.status)) buttons.push(act("Retry", "POST", `/api/v1/migrations/${record.id}:retry`, (r) => after.changed(r.data)));
  if (allowed.delete.includes(record.status)) buttons.push(act("Delete", "DELETE", `/api/v1/migrations/${record.id}`, () => after.deleted(record.id)));
  return buttons;
}

function renderActions(record) {
  fill(
    $("#progress-actions"),
    migrationActions(record, {
      changed: (next) => watchMigration(next),
      deleted: () => {
        stopProgress();
        show($("#progress"), false);
      },
      error: (error) => showPlainError($("#progress-error"), error),
    }),
    h("button", {
      type: "button",
      className: "secondary",
      text: "Close",
      on: {
        click: () => {
          stopProgress();
          show($("#progress"), false);
          $("#provider").focus();
        },
      },
    }),
  );
}
