// Provider presets from /ui/rules.json (the server's own presets and login hints, SPEC.md §7, §8).
import { h, show } from "./dom.js";

/**
 * Fills `select` with the providers and, on every change, host, port and security with the
 * provider's preset, and `hint` with its app-password hint (Gmail, Yahoo, iCloud).
 */
export function bindPresets(rules, { select, host, port, security, hint }) {
  select.replaceChildren(...rules.providers.map((provider) => h("option", { value: provider.id, text: provider.label })));
  select.value = "generic_imap";
  const apply = () => {
    const provider = rules.providers.find((item) => item.id === select.value);
    if (!provider) return;
    if (provider.host) {
      host.value = provider.host;
      port.value = String(provider.port);
      security.value = provider.security;
    } else if (Object.values(presetHosts(rules)).includes(host.value)) {
      host.value = "";
    }
    if (provider.needs_app_password) {
      hint.textContent = provider.login_hint;
      show(hint);
    } else {
      hint.textContent = "";
      show(hint, false);
    }
  };
  select.addEventListener("change", apply);
  // A security change without a port typed for it takes that security's default port.
  security.addEventListener("change", () => {
    const defaults = rules.security.map((item) => String(item.default_port));
    if (!port.value || defaults.includes(port.value)) {
      port.value = String(rules.security.find((item) => item.id === security.value)?.default_port ?? "");
    }
  });
  if (!port.value) port.value = String(rules.security.find((item) => item.id === security.value)?.default_port ?? "");
  apply();
}

function presetHosts(rules) {
  return Object.fromEntries(rules.providers.filter((p) => p.host).map((p) => [p.id, p.host]));
}

