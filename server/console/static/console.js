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
