// Import history: the paginated list of single migrations with a status filter, the §4 labels,
// error code, message and hint, and the actions each status allows.
import { api, query } from "./api.js";
import { $, bar, count, fill, h, show, when } from "./dom.js";
import { showPlainError } from "./errors.js";
import { cell, migrationActions, watchMigration } from "./progress.js";
import { selectTab } from "./app.js";

let page = 1;
let loading = 0;

export function setupHistory(state) {
  const filter = $("#history-status");
  filter.replaceChildren(
    h("option", { value: "", text: "All statuses" }),
    ...state.rules.migration_statuses.map((status) => h("option", { value: status.id, text: status.label })),
  );
  filter.addEventListener("change", () => {
    page = 1;
    loadHistory();
  });
  $("#history-refresh").addEventListener("click", () => loadHistory());
}

export async function loadHistory() {
  const ticket = ++loading;
  const error = $("#history-error");
  try {
    const result = await api("GET", `/api/v1/migrations${query({ status: $("#history-status").value, page, per_page: 20 })}`);
    if (ticket !== loading) return;
    show(error, false);
    render(result);
  } catch (failure) {
    if (ticket === loading) showPlainError(error, failure);
  }
}

function render(result) {
  const list = $("#history-list");
  if (!result.data?.length) {
    fill(list, h("p", { className: "help", text: $("#history-status").value ? "No imports with this status." : "No imports yet." }));
  } else {
    fill(
      list,
      h(
        "div",
        { className: "table-wrap" },
        h(
          "table",
          { className: "stack", id: "history-table" },
          h("caption", { className: "visually-hidden", text: "Imports" }),
          h("thead", {}, h("tr", {}, ["Import", "From", "To", "Status", "Progress", "Messages", "Error", "Actions"].map((name) => h("th", { scope: "col", text: name })))),
          h("tbody", {}, result.data.map(row)),
        ),
      ),
    );
  }
  pager($("#history-pager"), result.meta, (next) => {
    page = next;
    loadHistory();
  });
}

function row(record) {
  return h(
    "tr",
    { dataset: { id: String(record.id), status: record.status } },
    cell("Import", h("span", {}, `#${record.id}`, record.batch_id ? ` (batch #${record.batch_id})` : "", h("br"), h("small", { text: when(record.created_at) }))),
    cell("From", h("span", {}, record.source_email, h("br"), h("small", { text: record.source_host }))),
    cell("To", record.mailbox_email ?? `mailbox #${record.mailbox_id}`),
    cell("Status", h("span", { className: `status status-${record.status}`, text: record.status_label })),
    cell("Progress", h("span", { className: "inline-bar" }, bar(record.progress, `Import #${record.id} progress`), ` ${record.progress}%`)),
    cell("Messages", `${count(record.imported_messages)} imported, ${count(record.skipped_duplicates)} skipped, ${count(record.failed_messages)} failed of ${count(record.total_messages)}`),
    cell(
      "Error",
      record.error_code
        ? h("span", { className: "error-cell" }, h("strong", { text: record.error_message ?? "" }), record.error_hint ? h("span", { className: "hint-text", text: ` ${record.error_hint}` }) : null, h("code", { text: ` ${record.error_code}` }))
        : "—",
    ),
    cell(
      "Actions",
      h(
        "span",
        { className: "actions" },
        h("button", {
          type: "button",
          className: "secondary",
          text: "View",
          attrs: { "aria-label": `View import #${record.id}` },
          on: {
            click: () => {
              selectTab("tab-import");
              watchMigration(record);
            },
          },
        }),
        migrationActions(record, {
          changed: () => loadHistory(),
          deleted: () => loadHistory(),
          error: (error) => showPlainError($("#history-error"), error),
        }),
      ),
    ),
  );
}

/** Previous / next and "Page x of y" for a list's `meta`. */
export function pager(nav, meta, go) {
  if (!meta || meta.last_page <= 1) {
    nav.replaceChildren();
    return;
  }
  fill(
    nav,
    h("button", { type: "button", className: "secondary", text: "Previous", disabled: meta.current_page <= 1, on: { click: () => go(meta.current_page - 1) } }),
    h("span", { className: "page-of", text: ` Page ${meta.current_page} of ${meta.last_page} (${count(meta.total)} in all) ` }),
    h("button", { type: "button", className: "secondary", text: "Next", disabled: meta.current_page >= meta.last_page, on: { click: () => go(meta.current_page + 1) } }),
  );
}
