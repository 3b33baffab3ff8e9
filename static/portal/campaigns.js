/* A chain's funnel (Chart.js, vendored): per step, messages sent, delivered, opened and clicked
   (the treatment group). Data from the json_script "funnel-data"; translated labels from the
   canvas's data- attributes. */
(function () {
  "use strict";
  var canvas = document.getElementById("funnel-chart");
  var source = document.getElementById("funnel-data");
  if (!window.Chart || !canvas || !source) { return; }
  var data = JSON.parse(source.textContent);
  new Chart(canvas, {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: [
        {label: canvas.dataset.sentLabel, data: data.sent, backgroundColor: "#0b6bcb"},
        {label: canvas.dataset.deliveredLabel, data: data.delivered, backgroundColor: "#4c9be8"},
        {label: canvas.dataset.openedLabel, data: data.opened, backgroundColor: "#f08c00"},
        {label: canvas.dataset.clickedLabel, data: data.clicked, backgroundColor: "#1a7f37"}
      ]
    },
    options: {scales: {y: {beginAtZero: true, ticks: {precision: 0}}}}
  });
})();
