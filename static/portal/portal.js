/* Portal behaviour that would otherwise be inline (the CSP allows no inline script): a <select
   with data-autosubmit submits its form when changed (the language switch). */
(function () {
  "use strict";
  document.querySelectorAll("select[data-autosubmit]").forEach(function (select) {
    select.addEventListener("change", function () { select.form.submit(); });
  });
})();
