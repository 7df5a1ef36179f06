// Small DOM helpers. Every piece of data reaches the page as text (textContent or a property),
// never as markup: nothing here parses HTML.

/** An element with properties, attributes (`attrs`) and children (strings become text nodes). */
export function h(tag, props = {}, ...children) {
  const element = document.createElement(tag);
  for (const [key, value] of Object.entries(props)) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "attrs") {
      for (const [name, attr] of Object.entries(value)) {
        if (attr !== undefined && attr !== null && attr !== false) element.setAttribute(name, attr === true ? "" : String(attr));
      }
    } else if (key === "on") {
      for (const [event, handler] of Object.entries(value)) element.addEventListener(event, handler);
    } else if (key === "dataset") {
      Object.assign(element.dataset, value);
    } else if (key === "className") {
      element.className = value;
    } else if (key === "text") {
      element.textContent = String(value);
    } else {
      element[key] = value;
    }
  }
  append(element, children);
  return element;
}

function append(element, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    element.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
}

/** Replaces an element's children. */
export function fill(element, ...children) {
  element.replaceChildren();
  append(element, children);
  return element;
}

export const $ = (selector, root = document) => root.querySelector(selector);
export const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));

export function show(element, visible = true) {
  element.hidden = !visible;
}

/** 1234567 → "1,234,567". */
export function count(value) {
  return Number.isFinite(value) ? Math.round(value).toLocaleString("en-US") : "—";
}

/** Bytes in the units the plans are sold in (1 GB = 10^9 bytes). */
export function bytes(value) {
  if (!Number.isFinite(value)) return "—";
  const units = ["bytes", "KB", "MB", "GB", "TB"];
  let amount = value;
  let unit = 0;
  while (amount >= 1000 && unit < units.length - 1) {
    amount /= 1000;
    unit += 1;
  }
  return `${unit === 0 ? amount : amount.toFixed(amount < 10 ? 1 : 0)} ${units[unit]}`;
}

/** Seconds as "1 h 5 min", "3 min 20 s", "45 s". */
export function duration(seconds) {
  if (!Number.isFinite(seconds) || seconds < 0) return "—";
  const total = Math.round(seconds);
  const hours = Math.floor(total / 3600);
  const minutes = Math.floor((total % 3600) / 60);
  const rest = total % 60;
  if (hours > 0) return `${hours} h ${minutes} min`;
  if (minutes > 0) return `${minutes} min ${rest} s`;
  return `${rest} s`;
}

/** "2026-03-13T10:00:00+00:00" in the reader's own time zone, or "—". */
export function when(iso) {
  if (!iso) return "—";
  const date = new Date(iso);
  return Number.isNaN(date.getTime()) ? String(iso) : date.toLocaleString();
}

/** A labelled progress bar (0–100). */
export function bar(percent, label) {
  const value = Math.max(0, Math.min(100, Number(percent) || 0));
  return h("progress", { max: 100, value, attrs: { "aria-label": label }, text: `${value}%` });
}
