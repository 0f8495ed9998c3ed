// Tillbot's counter: a Telegram Mini App. No framework, no build step.
// Every API call carries Telegram's initData as `Authorization: tma <initData>`.
"use strict";
(function () {
  const tg = (window.Telegram && window.Telegram.WebApp) || null;
  const hashParams = new URLSearchParams(window.location.hash.slice(1));
  const initData = (tg && tg.initData) || hashParams.get("tgWebAppData") || "";
  const query = new URLSearchParams(window.location.search);
  const startParam = (tg && tg.initDataUnsafe && tg.initDataUnsafe.start_param) || "";
  const invoiceToken = query.get("i") || (startParam.startsWith("i_") ? startParam.slice(2) : "");

  const state = { texts: {}, language: "en", role: "customer", setup: null, digits: "",
    option: null, invoice: null, stream: null, timer: null, clockOffset: 0 };

  const $ = (id) => document.getElementById(id);
  const txt = (key, fallback) => state.texts[key] || fallback || key;

  function show(id) {
    document.querySelectorAll(".screen").forEach((s) => s.classList.toggle("active", s.id === id));
  }
  function message(text) { $("message-text").textContent = text; show("message"); }
  function applyTexts() {
    document.querySelectorAll("[data-text]").forEach((el) => {
      const value = state.texts[el.dataset.text];
      if (value) el.textContent = value;
    });
    document.querySelectorAll("[data-placeholder]").forEach((el) => {
      const value = state.texts[el.dataset.placeholder];
      if (value) el.placeholder = value;
    });
  }

  async function api(path, options) {
    const opts = options || {};
    const headers = Object.assign({ Authorization: "tma " + initData }, opts.headers || {});
    if (opts.body) headers["Content-Type"] = "application/json";
    const response = await fetch("api/" + path, Object.assign({}, opts, { headers }));
    let body = null;
    try { body = await response.json(); } catch (e) { body = null; }
    return { status: response.status, ok: response.ok, body: body || {} };
  }

  // -- amounts: integer minor units, written with the language's separators ---------------
  function parts() {
    const nf = new Intl.NumberFormat(state.language, { minimumFractionDigits: 1 });
    const decimal = (nf.formatToParts(1.5).find((p) => p.type === "decimal") || {}).value || ".";
    return { decimal, group: new Intl.NumberFormat(state.language) };
  }
  function formatMinor(minor, decimals) {
    const s = BigInt(minor).toString().padStart(decimals + 1, "0");
    const major = decimals ? s.slice(0, -decimals) : s;
    const frac = decimals ? s.slice(-decimals) : "";
    const p = parts();
    const grouped = p.group.format(BigInt(major));
    return frac ? grouped + p.decimal + frac : grouped;
  }
  function plainMinor(minor, decimals) {
    const s = BigInt(minor).toString().padStart(decimals + 1, "0");
    return decimals ? s.slice(0, -decimals) + "." + s.slice(-decimals) : s;
  }
  function amountMinor() { return state.digits ? parseInt(state.digits, 10) : 0; }
  function percentTip(minor, percent) { return Math.floor((minor * percent * 2 + 100) / 200); }
  function roundUpTip(minor, decimals) {
    const step = decimals > 0 ? Math.pow(10, decimals) : 100;
    return step - (minor % step);
  }
  // The currency's sign and its place from the browser's locale data; the digits are ours.
  function money(minor) {
    const digits = formatMinor(minor, state.setup.decimals);
    try {
      const nf = new Intl.NumberFormat(state.language, { style: "currency", currency: state.setup.currency });
      let out = "", placed = false;
      nf.formatToParts(0).forEach((p) => {
        if (["integer", "group", "decimal", "fraction"].includes(p.type)) {
          if (!placed) { out += digits; placed = true; }
        } else out += p.value;
      });
      return out;
    } catch (e) {
      return digits + " " + state.setup.currency;
    }
  }

  // -- the keypad -------------------------------------------------------------------------
  function renderAmount() {
    const setup = state.setup;
    $("amount").textContent = formatMinor(amountMinor(), setup.decimals);
    $("currency").textContent = setup.currency;
    $("charge").disabled = amountMinor() <= 0;
  }
  function press(key) {
    $("keypad-error").textContent = "";
    if (key === "C") state.digits = "";
    else if (key === "B") state.digits = state.digits.slice(0, -1);
    else if (state.digits.length < 12 && !(state.digits === "" && key === "0")) state.digits += key;
    renderAmount();
  }
  function renderOptions() {
    const box = $("options");
    box.textContent = "";
    const options = state.setup.options;
    state.option = options.length ? options[0].key : null;
    if (options.length < 2) { box.classList.add("hidden"); return; }
    box.classList.remove("hidden");
    options.forEach((o, index) => {
      const label = document.createElement("label");
      const input = document.createElement("input");
      input.type = "radio"; input.name = "option"; input.value = o.key; input.checked = index === 0;
      input.addEventListener("change", () => { state.option = o.key; });
      label.appendChild(input);
      label.appendChild(document.createTextNode(" " + o.title + " · " + txt(o.kind === "lightning" ? "kind_lightning" : "kind_checkout")));
      box.appendChild(label);
    });
  }
  async function loadToday() {
    const offset = -new Date().getTimezoneOffset();
    const r = await api("today?tz=" + offset);
    if (!r.ok) return;
    const sales = r.body.sales || [];
    const line = sales.map((s) => txt("today_total") + " " + s.total + " · " + txt("today_tips") + " " + s.tips).join(" | ");
    $("today").textContent = txt("today") + ": " + r.body.count + (line ? " · " + line : "");
  }
  function newSale() {
    stopLive();
    state.digits = ""; state.invoice = null; $("note").value = "";
    if (state.role !== "merchant") { message(txt("merchants_only")); return; }
    renderAmount(); show("keypad"); loadToday();
  }

  // -- the tip the customer chooses --------------------------------------------------------
  function showTips() {
    const minor = amountMinor();
    if (minor <= 0) return;
    $("tip-base").textContent = money(minor);
    $("tip-error").textContent = "";
    const box = $("tip-options");
    box.textContent = "";
    const choices = [{ kind: "none", label: txt("tip_none"), tip: 0 }];
    state.setup.tip_percents.forEach((p) => choices.push({ kind: "percent", percent: p, label: p + " %", tip: percentTip(minor, p) }));
    choices.push({ kind: "roundup", label: txt("tip_round"), tip: roundUpTip(minor, state.setup.decimals) });
    choices.forEach((c) => {
      const button = document.createElement("button");
      button.className = "tip-option";
      button.dataset.tip = c.kind === "percent" ? String(c.percent) : c.kind;
      const big = document.createElement("span"); big.textContent = c.label;
      const small = document.createElement("small");
      small.textContent = c.tip ? "+" + money(c.tip) + " = " + money(minor + c.tip) : money(minor);
      button.appendChild(big); button.appendChild(small);
      button.addEventListener("click", () => charge(c));
      box.appendChild(button);
    });
    show("tip");
  }
  async function charge(choice) {
    document.querySelectorAll(".tip-option").forEach((b) => { b.disabled = true; });
    const r = await api("sales", { method: "POST", body: JSON.stringify({
      amount: plainMinor(amountMinor(), state.setup.decimals),
      note: $("note").value.trim(),
      option: state.option,
      tip: { kind: choice.kind, percent: choice.percent },
    }) });
    document.querySelectorAll(".tip-option").forEach((b) => { b.disabled = false; });
    if (!r.ok) { $("tip-error").textContent = r.body.message || txt("error"); return; }
    showInvoice(r.body);
    live(r.body.token);
  }

  // -- the invoice: QR, countdown, live status ---------------------------------------------
  function showInvoice(view) {
    state.invoice = view;
    state.clockOffset = view.server_now - Date.now();
    if (view.status === "paid") return showPaid(view);
    if (view.status !== "pending") return showEnded(view);
    $("qr-total").textContent = view.total;
    $("qr-sats").textContent = view.sats ? view.sats + " sats" : "";
    $("qr-split").textContent = view.tip ? view.amount + " + " + txt("tip_label") + " " + view.tip : (view.note || "");
    if (view.qr) { $("qr-img").src = view.qr; $("qr-img").classList.remove("hidden"); }
    else $("qr-img").classList.add("hidden");
    const lightning = view.kind === "lightning";
    $("qr-hint").textContent = txt("scan");
    $("checkout").classList.toggle("hidden", lightning || !view.pay_uri || view.kind !== "checkout");
    if (view.pay_uri && view.kind === "checkout") $("checkout").href = view.pay_uri;
    $("copy").classList.toggle("hidden", !view.pay_uri);
    $("cancel").classList.toggle("hidden", !view.mine);
    $("copied").textContent = "";
    show("qr");
    tick();
    if (!state.timer) state.timer = setInterval(tick, 250);
  }
  function tick() {
    const view = state.invoice;
    if (!view || view.status !== "pending") return;
    const deadline = view.attempt_expires_at || view.expires_at;
    if (!deadline) { $("qr-countdown").textContent = ""; return; }
    const left = Math.max(0, Math.floor((deadline - (Date.now() + state.clockOffset)) / 1000));
    if (left <= 0) { $("qr-countdown").textContent = txt("renewing"); return; }
    const h = Math.floor(left / 3600), m = Math.floor((left % 3600) / 60), s = left % 60;
    const clock = (h ? h + ":" + String(m).padStart(2, "0") : String(m)) + ":" + String(s).padStart(2, "0");
    $("qr-countdown").textContent = txt("expires_in") + " " + clock;
  }
  function showPaid(view) {
    stopTimer();
    $("paid-title").textContent = txt("paid");
    $("paid-total").textContent = view.total;
    $("paid-split").textContent = view.tip ? view.amount + " + " + txt("tip_label") + " " + view.tip : (view.note || "");
    $("new-sale").classList.toggle("hidden", state.role !== "merchant" || !view.mine);
    show("paid");
    if (tg && tg.HapticFeedback) tg.HapticFeedback.notificationOccurred("success");
    if (state.role === "merchant") loadToday();
  }
  function showEnded(view) {
    stopTimer();
    const key = { expired: "expired", cancelled: "cancelled", failed: "failed" }[view.status] || "error";
    $("ended-title").textContent = txt(key);
    $("ended-total").textContent = view.total;
    $("ended-new").classList.toggle("hidden", state.role !== "merchant" || !view.mine);
    show("ended");
  }
  function stopTimer() { if (state.timer) { clearInterval(state.timer); state.timer = null; } }
  function stopLive() {
    stopTimer();
    if (state.stream) { state.stream.abort(); state.stream = null; }
  }
  // Server-Sent Events over fetch (EventSource cannot send the Authorization header).
  async function live(token) {
    stopLive();
    const controller = new AbortController();
    state.stream = controller;
    while (state.stream === controller) {
      try {
        const response = await fetch("api/invoices/" + encodeURIComponent(token) + "/events", {
          headers: { Authorization: "tma " + initData, Accept: "text/event-stream" },
          signal: controller.signal, cache: "no-store",
        });
        if (!response.ok || !response.body) throw new Error("stream " + response.status);
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffer = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buffer += decoder.decode(value, { stream: true });
          let cut;
          while ((cut = buffer.indexOf("\n\n")) >= 0) {
            const block = buffer.slice(0, cut); buffer = buffer.slice(cut + 2);
            const data = block.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trim()).join("\n");
            if (data) showInvoice(JSON.parse(data));
          }
        }
      } catch (e) {
        if (controller.signal.aborted) return;
      }
      if (state.invoice && state.invoice.status === "paid") return;
      await new Promise((resolve) => setTimeout(resolve, 1000));
    }
  }
  async function copy() {
    const uri = state.invoice && state.invoice.pay_uri;
    if (!uri) return;
    try { await navigator.clipboard.writeText(uri); }
    catch (e) {
      const area = document.createElement("textarea");
      area.value = uri; document.body.appendChild(area); area.select();
      try { document.execCommand("copy"); } catch (ignored) { /* shown below anyway */ }
      document.body.removeChild(area);
    }
    $("copied").textContent = txt("copied");
  }
  async function cancel() {
    const view = state.invoice;
    if (!view) return;
    const r = await api("invoices/" + encodeURIComponent(view.token) + "/cancel", { method: "POST" });
    if (r.ok) showInvoice(r.body);
    else $("copied").textContent = r.body.message || txt("error");
  }

  // -- start ------------------------------------------------------------------------------
  async function start() {
    if (tg) { try { tg.ready(); tg.expand(); } catch (e) { /* outside Telegram */ } }
    document.querySelectorAll(".keys button").forEach((b) => b.addEventListener("click", () => press(b.dataset.key)));
    $("charge").addEventListener("click", showTips);
    $("tip-back").addEventListener("click", () => show("keypad"));
    $("new-sale").addEventListener("click", newSale);
    $("ended-new").addEventListener("click", newSale);
    $("copy").addEventListener("click", copy);
    $("cancel").addEventListener("click", cancel);
    if (!initData) { message("Open the counter from Telegram."); return; }
    const me = await api("me");
    if (me.status === 401) { message("Open the counter from Telegram (401)."); return; }
    if (!me.ok) { message("Error " + me.status); return; }
    state.texts = me.body.texts || {};
    state.language = me.body.language || "en";
    state.role = me.body.role;
    document.documentElement.lang = state.language;
    if (state.texts.title) document.title = state.texts.title;
    applyTexts();
    if (invoiceToken) {
      const r = await api("invoices/" + encodeURIComponent(invoiceToken));
      if (!r.ok) { message(txt("not_found")); return; }
      showInvoice(r.body);
      if (r.body.status !== "paid") live(invoiceToken);
      return;
    }
    if (state.role !== "merchant") { message(txt("merchants_only")); return; }
    const setup = await api("setup");
    if (!setup.ok) { message(setup.body.message || txt("error")); return; }
    state.setup = setup.body;
    renderOptions();
    newSale();
  }
  start();
})();
