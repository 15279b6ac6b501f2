// Holub console: progressive enhancement only. Every form works without this script; it
// adds live counters on compose, the check of numbers as they are typed, reading a CSV's
// columns in the browser, and parts of pages that refresh themselves.
"use strict";

(function () {
  const csrf = () => {
    const input = document.querySelector("input[name=csrf]");
    return input ? input.value : "";
  };

  async function postJson(url, body) {
    const response = await fetch(url, {
      method: "POST",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRF-Token": csrf() },
      body: JSON.stringify(body),
    });
    if (!response.ok) throw new Error("HTTP " + response.status);
    return response.json();
  }

  function debounce(fn, ms) {
    let timer = null;
    return function () {
      clearTimeout(timer);
      timer = setTimeout(fn, ms);
    };
  }

  // ---- CSV in the browser: the header for the column choice, one column's values -----
  function decode(buffer) {
    try {
      return new TextDecoder("utf-8", { fatal: true }).decode(buffer);
    } catch (e) {
      return new TextDecoder("windows-1251").decode(buffer);
    }
  }

  function delimiterOf(line) {
    let best = ";", most = -1;
    for (const d of [";", ",", "\t"]) {
      const n = line.split(d).length - 1;
      if (n > most) { most = n; best = d; }
    }
    return best;
  }

  // RFC 4180 records: quoted cells, doubled quotes, line breaks inside quotes.
  function records(text, delimiter) {
    const rows = [];
    let row = [], cell = "", quoted = false;
    for (let i = 0; i < text.length; i++) {
      const c = text[i];
      if (quoted) {
        if (c === '"') {
          if (text[i + 1] === '"') { cell += '"'; i++; } else { quoted = false; }
        } else { cell += c; }
      } else if (c === '"' && cell === "") {
        quoted = true;
      } else if (c === delimiter) {
        row.push(cell.trim()); cell = "";
      } else if (c === "\n" || c === "\r") {
        if (c === "\r" && text[i + 1] === "\n") i++;
        row.push(cell.trim()); cell = "";
        if (row.some((v) => v !== "")) rows.push(row);
        row = [];
      } else { cell += c; }
    }
    row.push(cell.trim());
    if (row.some((v) => v !== "")) rows.push(row);
    return rows;
  }

  // ---- Compose ----------------------------------------------------------------------
  function compose(form) {
    const text = form.querySelector("textarea[name=text]");
    const translit = form.querySelector("input[name=transliterate]");
    const recipients = form.querySelector("textarea[name=recipients]");
    const file = form.querySelector("input[name=csv]");
    const column = form.querySelector("select[name=csv_column]");
    const out = (id) => document.getElementById(id);
    let csvRows = null, csvValues = [], recipientCount = 0;

    const estimate = debounce(async function () {
      try {
        const e = await postJson("/console/compose/estimate", {
          text: text.value,
          transliterate: !!(translit && translit.checked),
          recipients: recipientCount,
        });
        out("chars").textContent = e.characters;
        out("encoding").textContent = e.encoding;
        out("segments").textContent = e.segments;
        out("cost").textContent = e.cost;
        const preview = out("preview");
        if (preview) {
          preview.textContent = e.text;
          preview.hidden = !(translit && translit.checked);
        }
      } catch (err) { /* the counters stay as they were; review checks everything */ }
    }, 120);

    const check = debounce(async function () {
      try {
        const r = await postJson("/console/compose/recipients", {
          text: recipients.value,
          csv: csvValues,
        });
        recipientCount = r.count;
        out("recipients-count").textContent = r.count;
        const list = out("recipients-invalid");
        list.replaceChildren();
        for (const entry of r.invalid) {
          const li = document.createElement("li");
          li.textContent = entry;
          list.appendChild(li);
        }
        if (r.invalid_count > r.invalid.length) {
          const li = document.createElement("li");
          li.textContent = "… +" + (r.invalid_count - r.invalid.length);
          list.appendChild(li);
        }
        out("recipients-invalid-wrap").hidden = r.invalid_count === 0;
        estimate();
      } catch (err) { /* review checks everything */ }
    }, 200);

    function takeColumn() {
      csvValues = [];
      const index = csvRows && csvRows[0] ? csvRows[0].indexOf(column.value) : -1;
      if (index >= 0) {
        for (const row of csvRows.slice(1)) {
          if (row[index] !== undefined && row[index] !== "") csvValues.push(row[index]);
        }
      }
      check();
    }

    if (file) {
      file.addEventListener("change", function () {
        csvRows = null; csvValues = [];
        column.replaceChildren();
        const chosen = file.files && file.files[0];
        if (!chosen) { check(); return; }
        const reader = new FileReader();
        reader.onload = function () {
          const content = decode(reader.result).replace(/^\uFEFF/, "");
          const firstLine = content.split(/\r?\n/, 1)[0] || "";
          csvRows = records(content, delimiterOf(firstLine));
          const header = csvRows[0] || [];
          let pick = 0;
          header.forEach(function (name, i) {
            const option = document.createElement("option");
            option.value = name;
            option.textContent = name || "#" + (i + 1);
            column.appendChild(option);
            if (/phone|tel|телефон|номер|mobile/i.test(name) && pick === 0) pick = i;
          });
          column.value = header[pick] || "";
          column.disabled = false;
          takeColumn();
        };
        reader.readAsArrayBuffer(chosen);
      });
      column.addEventListener("change", takeColumn);
    }

    text.addEventListener("input", estimate);
    if (translit) translit.addEventListener("change", estimate);
    recipients.addEventListener("input", check);
    estimate();
    if (recipients.value) check();
  }

  // ---- Parts of a page that refresh themselves -----------------------------------------
  function refreshing(element) {
    const url = element.getAttribute("data-refresh");
    let stopped = false;
    async function tick() {
      if (stopped) return;
      if (!document.hidden) {
        try {
          const response = await fetch(url, { credentials: "same-origin" });
          if (response.ok) {
            element.innerHTML = await response.text();
            if (response.headers.get("X-Holub-Final") === "1") stopped = true;
          }
        } catch (err) { /* try again at the next tick */ }
      }
      if (!stopped) setTimeout(tick, 2000);
    }
    setTimeout(tick, 2000);
  }

  document.addEventListener("DOMContentLoaded", function () {
    const form = document.getElementById("compose");
    if (form) compose(form);
    document.querySelectorAll("[data-refresh]").forEach(refreshing);
  });
})();
