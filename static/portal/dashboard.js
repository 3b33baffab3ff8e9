/* The dashboard's revenue chart (Chart.js, vendored): monthly paid revenue as bars and buyers as
   a line. Data from the json_script "revenue-data"; translated labels from the canvas's data-. */
(function () {
  "use strict";
  var canvas = document.getElementById("revenue-chart");
  var source = document.getElementById("revenue-data");
  if (!window.Chart || !canvas || !source) { return; }
  var data = JSON.parse(source.textContent);
  new Chart(canvas, {
    data: {
      labels: data.labels,
      datasets: [
        {type: "bar", label: canvas.dataset.revenueLabel, data: data.revenue, yAxisID: "y", backgroundColor: "#0b6bcb"},
        {type: "line", label: canvas.dataset.buyersLabel, data: data.buyers, yAxisID: "y1", borderColor: "#f08c00"}
      ]
    },
    options: {scales: {y: {beginAtZero: true}, y1: {beginAtZero: true, position: "right", grid: {drawOnChartArea: false}}}}
  });
})();
