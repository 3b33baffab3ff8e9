/*
 * Cookie banner of the agency CVM platform (152-FZ): the visitor's consent per cookie category.
 *
 * Served by /consent/banner.js?site=KEY, which prepends `window.CVM_CONSENT_CONFIG = {...}`:
 * the site key, the endpoint to post choices to, and the client's published consent texts.
 *
 *   - Accept and Reject are the same button, side by side; Settings opens one switch per
 *     category (off until the visitor turns it on) with the full consent text.
 *   - The choice is kept in a first-party cookie `cvm_consent` (anonymous subject id, choices,
 *     text versions; 180 days) and posted to the platform, which logs it as consent records.
 *   - For the site's tags: `window.consent.granted('analytics_cookies')`, the `consent:ready`
 *     and `consent:changed` events on window, and blocked tags written as
 *     <script type="text/plain" data-consent="analytics_cookies">…</script>, which run only
 *     once their categories are granted.
 *
 * No external resources: no fonts, images or other scripts are loaded.
 *
 * Under a Content-Security-Policy with nonces, give this script tag the page's nonce
 * (<script src="…/banner.js?site=KEY" nonce="…">): the banner's own <style> carries it, and so
 * do blocked inline tags when they run (give them the nonce too).
 */
(function () {
  "use strict";

  // Only readable while this script first runs.
  var NONCE = (document.currentScript && document.currentScript.nonce) || "";

  var config = window.CVM_CONSENT_CONFIG;
  if (!config || !config.endpoint || !config.categories) {
    if (window.console) console.warn("cvm consent: no configuration (check ?site=KEY)");
    return;
  }
  var COOKIE = config.cookieName || "cvm_consent";
  var MAX_AGE = (config.cookieDays || 180) * 24 * 60 * 60;
  var categories = config.categories;
  var codes = categories.map(function (c) { return c.code; });
  var versions = {};
  categories.forEach(function (c) { versions[c.code] = c.textVersion; });

  // --- state and cookie ----------------------------------------------------------------------

  function readCookie() {
    var parts = document.cookie ? document.cookie.split("; ") : [];
    for (var i = 0; i < parts.length; i++) {
      var eq = parts[i].indexOf("=");
      if (parts[i].slice(0, eq) !== COOKIE) continue;
      try {
        var value = JSON.parse(decodeURIComponent(parts[i].slice(eq + 1)));
        if (value && typeof value.id === "string" && value.c && typeof value.c === "object") {
          return value;
        }
      } catch (e) { /* a damaged cookie counts as no choice */ }
    }
    return null;
  }

  function writeCookie(value) {
    document.cookie = COOKIE + "=" + encodeURIComponent(JSON.stringify(value)) +
      "; Max-Age=" + MAX_AGE + "; Path=/; SameSite=Lax" +
      (location.protocol === "https:" ? "; Secure" : "");
  }

  function newSubjectId() {
    var c = window.crypto;
    if (c && c.randomUUID) return c.randomUUID();
    var bytes = new Uint8Array(16);
    c.getRandomValues(bytes);
    return Array.prototype.map.call(bytes, function (b) {
      return (b + 256).toString(16).slice(1);
    }).join("");
  }

  var state = readCookie();

  function granted(code) {
    return !!(state && state.c && state.c[code] === true);
  }

  function currentChoices() {
    var out = {};
    codes.forEach(function (code) { out[code] = granted(code); });
    return out;
  }

  // Ask again when a category is new, or the text of a granted category has a new version.
  function decided() {
    if (!state) return false;
    return codes.every(function (code) {
      if (typeof state.c[code] !== "boolean") return false;
      return !(state.c[code] && state.tv && state.tv[code] !== versions[code]);
    });
  }

  function emit(name) {
    var detail = { choices: currentChoices(), subjectId: state ? state.id : null };
    var event;
    try {
      event = new CustomEvent(name, { detail: detail });
    } catch (e) {
      event = document.createEvent("CustomEvent");
      event.initCustomEvent(name, false, false, detail);
    }
    window.dispatchEvent(event);
  }

  // --- blocked tags ----------------------------------------------------------------------------

  function activateTags() {
    var blocked = document.querySelectorAll('script[type="text/plain"][data-consent]');
    Array.prototype.forEach.call(blocked, function (old) {
      if (old.getAttribute("data-consent-loaded")) return;
      var needed = old.getAttribute("data-consent").split(/[\s,]+/).filter(Boolean);
      if (!needed.length || !needed.every(granted)) return;
      var tag = document.createElement("script");
      Array.prototype.forEach.call(old.attributes, function (attr) {
        if (attr.name !== "type" && attr.name !== "data-consent" && attr.name !== "nonce") {
          tag.setAttribute(attr.name, attr.value);
        }
      });
      // The browser hides a nonce attribute's value; the property keeps it.
      if (old.nonce) tag.nonce = old.nonce;
      tag.text = old.text;
      old.setAttribute("data-consent-loaded", "1");
      old.parentNode.insertBefore(tag, old.nextSibling);
    });
  }

  // --- posting the choice --------------------------------------------------------------------

  function send() {
    var body = JSON.stringify({
      subject_id: state.id,
      choices: state.c,
      texts: state.tv,
      url: location.href
    });
    return fetch(config.endpoint, {
      method: "POST",
      mode: "cors",
      credentials: "omit",
      headers: { "Content-Type": "application/json" },
      body: body
    }).then(function (response) {
      if (!response.ok) throw new Error("HTTP " + response.status);
      state.s = 1;
      writeCookie(state);
      return true;
    }).catch(function (error) {
      // The choice still holds on this device; it is sent again on the next page.
      if (window.console) console.warn("cvm consent: the choice was not recorded:", error);
      return false;
    });
  }

  function choose(choices) {
    if (!state) state = { v: 1, id: newSubjectId() };
    state.c = {};
    codes.forEach(function (code) { state.c[code] = choices[code] === true; });
    state.tv = versions;
    state.t = Date.now();
    state.s = 0;
    writeCookie(state);
    hideBanner();
    activateTags();
    emit("consent:changed");
    api.lastSend = send();
    return api.lastSend;
  }

  function all(value) {
    var out = {};
    codes.forEach(function (code) { out[code] = value; });
    return out;
  }

  // --- the banner --------------------------------------------------------------------------------

  var CSS = [
    ":host { all: initial; }",
    ".cvm { position: fixed; left: 16px; right: 16px; bottom: 16px; z-index: 2147483000;",
    "  box-sizing: border-box; max-width: 760px; max-height: 85vh; overflow: auto;",
    "  margin: 0 auto; padding: 18px 20px; background: #fff; color: #1f2933;",
    "  border: 1px solid #cbd2d9; border-radius: 10px; box-shadow: 0 8px 30px rgba(0,0,0,.18);",
    "  font: 15px/1.45 system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif; }",
    "[hidden] { display: none !important; }",
    "h2 { margin: 0 0 6px; font-size: 17px; }",
    "h3 { margin: 0; font-size: 15px; }",
    "p { margin: 0 0 12px; }",
    ".choices { display: flex; flex-wrap: wrap; gap: 12px; }",
    /* Accept and Reject: one class, so the same size, colour and weight. */
    ".choice { flex: 1 1 0; min-width: 160px; padding: 11px 16px; border-radius: 6px;",
    "  border: 2px solid #1f4e79; background: #1f4e79; color: #fff; cursor: pointer;",
    "  font: 600 15px/1.3 system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif; }",
    ".choice:hover { background: #173b5c; border-color: #173b5c; }",
    ".choice:focus-visible, .link:focus-visible, .save:focus-visible, input:focus-visible",
    "  { outline: 3px solid #f0b429; outline-offset: 2px; }",
    ".link { margin-top: 10px; padding: 4px 0; border: 0; background: none; color: #1f4e79;",
    "  text-decoration: underline; cursor: pointer; font: inherit; }",
    ".settings { margin-top: 14px; border-top: 1px solid #e4e7eb; padding-top: 12px; }",
    ".category { padding: 10px 0; border-bottom: 1px solid #e4e7eb; }",
    ".category label { display: flex; gap: 10px; align-items: flex-start; cursor: pointer; }",
    ".category input { width: 18px; height: 18px; margin: 2px 0 0; flex: none; }",
    ".muted { color: #52606d; font-size: 13px; }",
    "details { margin: 6px 0 0 28px; font-size: 13px; color: #3e4c59; }",
    "summary { cursor: pointer; color: #1f4e79; }",
    "dl { margin: 6px 0; } dt { font-weight: 600; margin-top: 6px; } dd { margin: 0; }",
    ".body { white-space: pre-line; margin-top: 8px; }",
    ".save { margin-top: 12px; padding: 9px 16px; border-radius: 6px; cursor: pointer;",
    "  border: 2px solid #1f4e79; background: #fff; color: #1f4e79; font: inherit;",
    "  font-weight: 600; }",
    ".reopen { position: fixed; left: 12px; bottom: 12px; z-index: 2147483000;",
    "  padding: 6px 12px; border-radius: 16px; border: 1px solid #cbd2d9; background: #fff;",
    "  color: #1f2933; cursor: pointer; box-shadow: 0 2px 8px rgba(0,0,0,.15);",
    "  font: 13px/1.3 system-ui, -apple-system, 'Segoe UI', Roboto, Arial, sans-serif; }",
    "@media (max-width: 480px) { .choice { flex-basis: 100%; } }"
  ].join("\n");

  function el(tag, attrs, children) {
    var node = document.createElement(tag);
    Object.keys(attrs || {}).forEach(function (name) {
      if (name === "text") node.textContent = attrs[name];
      else if (name === "hidden") node.hidden = !!attrs[name];
      else node.setAttribute(name, attrs[name]);
    });
    (children || []).forEach(function (child) { if (child) node.appendChild(child); });
    return node;
  }

  var PARTS = [
    ["operatorName", "Оператор"],
    ["operatorAddress", "Адрес оператора"],
    ["purpose", "Цель обработки"],
    ["dataList", "Перечень данных"],
    ["processors", "Кому поручена обработка и передаются данные"],
    ["actions", "Действия с данными"],
    ["term", "Срок действия согласия"],
    ["withdrawal", "Как отозвать согласие"]
  ];

  function textDetails(category) {
    var list = el("dl");
    PARTS.forEach(function (part) {
      if (!category[part[0]]) return;
      list.appendChild(el("dt", { text: part[1] }));
      list.appendChild(el("dd", { text: category[part[0]] }));
    });
    return el("details", {}, [
      el("summary", { text: "Текст согласия (версия " + category.textVersion + ")" }),
      el("p", { text: category.title }),
      list,
      category.body ? el("div", { "class": "body", text: category.body }) : null
    ]);
  }

  var root = null;
  var banner = null;
  var settingsPanel = null;
  var reopen = null;
  var switches = {};

  function build() {
    var host = el("div", { id: "cvm-consent" });
    root = host.attachShadow ? host.attachShadow({ mode: "open" }) : host;
    var style = el("style", { text: CSS });
    if (NONCE) style.nonce = NONCE;
    root.appendChild(style);

    var operator = config.operator && config.operator.name ? config.operator.name : "Сайт";
    var intro = operator + " использует необходимые cookie для работы сайта, а аналитические " +
      "и рекламные — только с вашего согласия. Вы можете принять или отклонить их, выбрать " +
      "категории в настройках и изменить решение в любой момент.";

    settingsPanel = el("div", { "class": "settings", hidden: true }, [
      el("h3", { text: "Настройки cookie" }),
      el("p", {
        "class": "muted",
        text: "Необходимые cookie включены всегда: без них сайт не работает и не помнит " +
          "этот выбор. Остальные — только если вы их включите."
      })
    ]);
    categories.forEach(function (category) {
      var box = el("input", { type: "checkbox", "data-category": category.code });
      switches[category.code] = box;
      settingsPanel.appendChild(el("div", { "class": "category" }, [
        el("label", {}, [
          box,
          el("span", {}, [
            el("strong", { text: category.name }),
            el("div", { "class": "muted", text: category.purpose || category.title })
          ])
        ]),
        textDetails(category)
      ]));
    });
    var save = el("button", { type: "button", "class": "save", "data-action": "save",
      text: "Сохранить выбор" });
    settingsPanel.appendChild(save);

    var accept = el("button", { type: "button", "class": "choice", "data-action": "accept",
      text: "Принять все" });
    var reject = el("button", { type: "button", "class": "choice", "data-action": "reject",
      text: "Отклонить все" });
    var settingsButton = el("button", { type: "button", "class": "link",
      "data-action": "settings", "aria-expanded": "false", text: "Настройки" });

    banner = el("div", { "class": "cvm", role: "dialog", "aria-modal": "false",
      "aria-labelledby": "cvm-title", hidden: true }, [
      el("h2", { id: "cvm-title", text: "Мы используем cookie" }),
      el("p", { text: intro }),
      el("div", { "class": "choices" }, [accept, reject]),
      settingsButton,
      settingsPanel
    ]);
    reopen = el("button", { type: "button", "class": "reopen", "data-action": "reopen",
      hidden: true, text: "Настройки cookie" });
    root.appendChild(banner);
    root.appendChild(reopen);

    accept.addEventListener("click", function () { choose(all(true)); });
    reject.addEventListener("click", function () { choose(all(false)); });
    save.addEventListener("click", function () {
      var picked = {};
      codes.forEach(function (code) { picked[code] = switches[code].checked; });
      choose(picked);
    });
    settingsButton.addEventListener("click", function () {
      var open = settingsPanel.hidden;
      settingsPanel.hidden = !open;
      settingsButton.setAttribute("aria-expanded", open ? "true" : "false");
    });
    reopen.addEventListener("click", function () { openBanner(true); });

    document.body.appendChild(host);
  }

  function showBanner(withSettings) {
    codes.forEach(function (code) { switches[code].checked = granted(code); });
    settingsPanel.hidden = !withSettings;
    banner.hidden = false;
    reopen.hidden = true;
  }

  function hideBanner() {
    if (!banner) return;
    banner.hidden = true;
    reopen.hidden = config.reopenButton === false;
  }

  function openBanner(withSettings) {
    if (!banner) return;
    showBanner(withSettings !== false);
  }

  // --- the public API and start-up -----------------------------------------------------------

  var api = {
    categories: codes.slice(),
    granted: granted,
    choices: currentChoices,
    subjectId: function () { return state ? state.id : null; },
    decided: decided,
    open: openBanner,
    lastSend: null
  };
  window.consent = api;

  function start() {
    if (!codes.length) {
      if (window.console) console.warn("cvm consent: the client has no published cookie texts");
      return;
    }
    build();
    if (decided()) {
      hideBanner();
      if (!state.s) api.lastSend = send(); // the last post failed: send it again
    } else {
      showBanner(false);
    }
    activateTags();
    emit("consent:ready");
  }

  if (document.readyState === "loading") {
    document.addEventListener("DOMContentLoaded", start);
  } else {
    start();
  }
})();
