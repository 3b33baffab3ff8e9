/* The cookie-banner demo page (templates/consent/demo.html): shows what the site's tags see
   and which blocked tags the banner has let run. Loaded before the banner. */
(function () {
  var loaded = {};
  window.cvmDemoTagLoaded = function (id) {
    loaded[id] = true;
    refresh();
  };
  function refresh() {
    var consent = window.consent;
    ["analytics_cookies", "ad_cookies"].forEach(function (code) {
      var cell = document.getElementById("granted-" + code);
      if (cell) cell.textContent = consent ? String(consent.granted(code)) : "—";
    });
    document.querySelectorAll("td[id^='tag-']").forEach(function (cell) {
      var id = cell.id.slice(4);
      var allowed = consent && consent.granted(cell.getAttribute("data-category"));
      if (loaded[id] && allowed) {
        cell.className = "status-loaded";
        cell.textContent = "загружен";
      } else if (loaded[id]) {
        cell.className = "status-stale";
        cell.textContent = "загружен до перезагрузки страницы; дальше — заблокирован";
      } else {
        cell.className = "status-blocked";
        cell.textContent = "заблокирован — нет согласия";
      }
    });
  }
  function log(event) {
    var item = document.createElement("li");
    item.textContent = event.type + " " + JSON.stringify(event.detail.choices);
    document.getElementById("events").appendChild(item);
    refresh();
  }
  window.addEventListener("consent:ready", log);
  window.addEventListener("consent:changed", log);
  document.getElementById("open-settings").addEventListener("click", function () {
    if (window.consent) window.consent.open();
  });
})();
