// Professional portal: the class of a document follows its type (ASS_X16). Without JavaScript the class
// is shown once the form is sent back, and the server derives it anyway.
(function () {
  "use strict";
  function update(select) {
    var output = document.getElementById(select.getAttribute("data-class-output"));
    var option = select.options[select.selectedIndex];
    if (output) {
      output.textContent = option ? (option.getAttribute("data-class") || "") : "";
    }
  }
  document.addEventListener("change", function (event) {
    var target = event.target;
    if (target && target.hasAttribute && target.hasAttribute("data-class-output")) {
      update(target);
    }
  });
  document.addEventListener("DOMContentLoaded", function () {
    var selects = document.querySelectorAll("select[data-class-output]");
    for (var i = 0; i < selects.length; i++) {
      update(selects[i]);
    }
  });
})();
