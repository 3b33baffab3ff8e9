/* Chain results (Chart.js, vendored): the absolute uplift with its 95 % interval per chain and
   step ("uplift-data"), and the share of a month's revenue from triggered messages next to the
   agency's benchmark ("share-data"). Data from json_script; labels from the canvas's data-
   attributes (no inline scripts: CSP). */
(function () {
  "use strict";
  if (!window.Chart) { return; }

  var upliftCanvas = document.getElementById("uplift-chart");
  var upliftSource = document.getElementById("uplift-data");
  if (upliftCanvas && upliftSource) {
    var u = JSON.parse(upliftSource.textContent);
    var labels = u.labels.map(function (label) {
      return label || upliftCanvas.dataset.allLabel;
    });
    new Chart(upliftCanvas, {
      type: "bar",
      data: {
        labels: labels,
        datasets: [
          {type: "bar", label: upliftCanvas.dataset.intervalLabel, data: u.interval,
           backgroundColor: "rgba(11, 107, 203, 0.35)", borderColor: "#0b6bcb", borderWidth: 1,
           barPercentage: 0.4},
          {type: "line", label: upliftCanvas.dataset.pointLabel, data: u.point,
           showLine: false, pointRadius: 6, pointStyle: "rectRot", backgroundColor: "#1f2933",
           borderColor: "#1f2933"}
        ]
      },
      options: {indexAxis: "y"}
    });
  }

  var shareCanvas = document.getElementById("share-chart");
  var shareSource = document.getElementById("share-data");
  if (shareCanvas && shareSource) {
    var s = JSON.parse(shareSource.textContent);
    new Chart(shareCanvas, {
      type: "bar",
      data: {
        labels: s.labels,
        datasets: [
          {type: "bar", label: shareCanvas.dataset.shareLabel, data: s.share,
           backgroundColor: "#0b6bcb"},
          {type: "line", label: shareCanvas.dataset.benchmarkLabel, data: s.benchmark,
           borderColor: "#cf222e", borderDash: [6, 4], pointRadius: 0, fill: false}
        ]
      },
      options: {scales: {y: {beginAtZero: true, suggestedMax: 30}}}
    });
  }
})();
