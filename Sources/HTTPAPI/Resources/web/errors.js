// API errors on the page: a field's message and the hint beside the field it names (`fields` of a
// validation_error), everything else in the form's alert line with its code and request id.
import { $, $$, fill, h, show } from "./dom.js";

/** Removes every error shown in `scope`. */
export function clearErrors(scope) {
  for (const element of $$(".field-error, .form-error", scope)) {
    element.replaceChildren();
    show(element, false);
  }
  for (const control of $$("[aria-invalid]", scope)) control.removeAttribute("aria-invalid");
}

function describe(error) {
  return [
    h("strong", { text: error.message }),
    error.hint ? h("span", { className: "hint-text", text: ` ${error.hint}` }) : null,
    h("span", { className: "code", text: ` (${error.code}${error.requestID ? `, request ${error.requestID}` : ""})` }),
  ];
}

/** Puts `message` (and the hint) beside the field `name` of `scope`; false when no such field is shown. */
export function fieldError(scope, name, message, hint) {
  const slot = $(`[data-error-for="${CSS.escape(name)}"]`, scope);
  // The slot itself starts hidden; a slot in a hidden step or form does not count.
  if (!slot || slot.parentElement?.closest("[hidden]")) return false;
  fill(slot, message, hint ? h("span", { className: "hint-text", text: ` ${hint}` }) : null);
  show(slot);
  control(slot)?.setAttribute("aria-invalid", "true");
  return true;
}

/** The shown control of the field a slot belongs to. */
function control(slot) {
  const field = slot?.closest(".field");
  return field ? $$("input, select, textarea", field).find((element) => !element.hidden) : null;
}

/**
 * Shows `error` in `scope`: each named field beside its control, the rest in `summary`.
 * `fieldFor(error)` may name one field an error without `fields` belongs to (a refused login
 * beside the password). Focuses the first control in error, for keyboard users.
 */
export function showError(scope, summary, error, fieldFor) {
  let placed = 0;
  for (const [name, message] of Object.entries(error.fields ?? {})) {
    if (fieldError(scope, name, `${label(scope, name)} ${message}.`.replace(/\.\.$/, "."), error.hint)) placed += 1;
  }
  const field = placed === 0 && fieldFor ? fieldFor(error) : null;
  if (field && fieldError(scope, field, error.message, error.hint)) placed += 1;
  if (summary) {
    fill(summary, describe(error));
    show(summary);
  }
  const first = $("[aria-invalid=true]", scope);
  if (first && placed > 0) first.focus();
  else summary?.focus?.();
}

/** The visible label of a field, for "Port must be …" instead of "source_port must be …". */
function label(scope, name) {
  const slot = $(`[data-error-for="${CSS.escape(name)}"]`, scope);
  const text = control(slot)?.labels?.[0]?.firstChild?.textContent?.trim();
  return text || name;
}

/** Shows a plain error (no form) in `target`. */
export function showPlainError(target, error) {
  fill(target, describe(error));
  show(target);
}
