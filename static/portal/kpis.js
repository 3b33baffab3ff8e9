/* The KPI page's trend charts (Chart.js, vendored): one line chart per canvas, the data (months,
   and per chart its series with translated labels) from the json_script "kpi-data". Nulls
   (no data, or hidden by the tier) are gaps, never zeros. */
(function () {
  "use strict";
  var source = document.getElementById("kpi-data");
  if (!window.Chart || !source) { return; }
  var data = JSON.parse(source.textContent);
  var colours = ["#0b6bcb", "#f08c00", "#1a7f37", "#9c36b5", "#c92a2a"];
  data.charts.forEach(function (chart) {
    var canvas = document.getElementById(chart.id);
    if (!canvas || !chart.series.length) { return; }
    new Chart(canvas, {
      type: "line",
      data: {
        labels: data.labels,
        datasets: chart.series.map(function (series, i) {
          return {label: series.label, data: series.data, borderColor: colours[i % colours.length],
                  backgroundColor: colours[i % colours.length], spanGaps: false};
        })
      },
      options: {scales: {y: {beginAtZero: true}}}
    });
  });
})();
