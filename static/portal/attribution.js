/* Attribution (Chart.js, vendored): revenue per channel or campaign, one bar per model side by
   side. Data (labels, series of {label, data}) from the json_script "attribution-data". */
(function () {
  "use strict";
  var canvas = document.getElementById("attribution-chart");
  var source = document.getElementById("attribution-data");
  if (!window.Chart || !canvas || !source) { return; }
  var data = JSON.parse(source.textContent);
  var colours = ["#0b6bcb", "#4c9be8", "#f08c00", "#1a7f37", "#8250df"];
  new Chart(canvas, {
    type: "bar",
    data: {
      labels: data.labels,
      datasets: data.series.map(function (series, i) {
        return {label: series.label, data: series.data, backgroundColor: colours[i % colours.length]};
      })
    },
    options: {scales: {y: {beginAtZero: true}}}
  });
})();
