// Follow a running federation: re-fetch this page every `data-refresh` seconds and swap its content in place.
// If the explorer itself stops answering, keep the last page and say so; the chain's own outage is a banner the
// server renders (503), swapped in like any page.
(function () {
  "use strict";
  const every = Number(document.body.dataset.refresh || 0) * 1000;
  if (!every) return;
  const offline = document.getElementById("offline");

  async function poll() {
    try {
      const response = await fetch(window.location.href, { cache: "no-store", headers: { "X-Explorer-Poll": "1" } });
      const doc = new DOMParser().parseFromString(await response.text(), "text/html");
      const fresh = doc.getElementById("page");
      if (fresh) {
        document.getElementById("page").replaceWith(fresh);
        document.title = doc.title;
        document.body.dataset.polled = String(Number(document.body.dataset.polled || 0) + 1);
      }
      offline.hidden = true;
    } catch (err) {
      offline.hidden = false;
    }
    window.setTimeout(poll, every);
  }
  window.setTimeout(poll, every);
})();
