// The dead-letters page, live: a replay form is posted in the background (with its CSRF token),
// then each product's status is polled from /console/products/status until none is pending.
"use strict";
(function () {
  const statuses = () => [...document.querySelectorAll("[data-testid=letter-status]")];

  async function refresh() {
    const ids = [...new Set(statuses().map((cell) => cell.dataset.productId))];
    if (!ids.length) return false;
    const response = await fetch("/console/products/status?ids=" + ids.join(","), {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
    });
    if (!response.ok) return false;
    const byId = await response.json();
    let pending = false;
    for (const cell of statuses()) {
      const status = byId[cell.dataset.productId] || "deleted";
      cell.textContent = status;
      cell.className = "status " + status;
      pending = pending || status === "pending";
    }
    return pending;
  }

  function poll(deadline) {
    refresh().then((pending) => {
      if (pending && Date.now() < deadline) setTimeout(() => poll(deadline), 500);
    });
  }

  for (const form of document.querySelectorAll("form[data-replay]")) {
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      const note = document.querySelector("[data-testid=replay-result]");
      const response = await fetch(form.action, {
        method: "POST",
        body: new URLSearchParams(new FormData(form)),
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      const result = await response.json();
      note.textContent = response.ok
        ? `replayed ${result.published}, skipped ${JSON.stringify(result.skipped)}`
        : result.message;
      if (response.ok) poll(Date.now() + 120000);
    });
  }
})();

// The pipeline page, live: /console/pipeline.json every two seconds, written into the page.
(function () {
  const table = document.querySelector("[data-testid=lag]");
  if (!table) return;
  const cell = (id) => document.querySelector(`[data-testid=${id}]`);
  // Rows of a header cell and value cells, every value as text (never as HTML).
  const rows = (body, entries) => {
    body.replaceChildren(
      ...entries.map(([name, ...values]) => {
        const row = document.createElement("tr");
        const th = document.createElement("th");
        th.textContent = name;
        row.append(th);
        for (const value of values) {
          const td = document.createElement("td");
          td.textContent = String(value ?? "");
          row.append(td);
        }
        return row;
      }),
    );
  };
  let refreshed = 0;
  async function refresh() {
    try {
      const response = await fetch("/console/pipeline.json", {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
      });
      if (response.ok) {
        const view = await response.json();
        rows(
          cell("workers"),
          view.workers.map((w) => [
            w.address, w.jobs_in_flight, w.images_total, w.pool_rebuilds, w.error,
          ]),
        );
        cell("jobs-in-flight").textContent = view.jobs_in_flight ?? "?";
        cell("images-total").textContent = view.images_total ?? "?";
        cell("images-per-s").textContent = view.images_per_s ?? "…";
        cell("pool-rebuilds").textContent = view.pool_rebuilds ?? "?";
        rows(cell("stages"), Object.entries(view.stage_mean_ms || {}));
        rows(table, Object.entries(view.lag).map(([p, lag]) => ["partition " + p, lag]));
        cell("refreshed").textContent = String(++refreshed);
      }
    } finally {
      setTimeout(refresh, 2000);
    }
  }
  refresh();
})();
