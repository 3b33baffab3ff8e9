"""The client's customers: exact look-ups only (email, phone in any spelling, external id), fast
at 1M customers, and one customer's orders."""

from __future__ import annotations

from django.views.generic import DetailView, ListView

from clients.models import Customer
from clients.selectors import customer_orders_recent, customers_search

from ..mixins import ClientPortalMixin


class CustomerListView(ClientPortalMixin, ListView):
    template_name = "portal/customers.html"
    paginate_by = 50
    context_object_name = "customers"

    def get_queryset(self):
        return customers_search(client=self.client, term=self.request.GET.get("q", ""))

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["query"] = self.request.GET.get("q", "")
        return context


class CustomerDetailView(ClientPortalMixin, DetailView):
    template_name = "portal/customer_detail.html"
    context_object_name = "customer"

    def get_object(self, queryset=None):
        return self.get_scoped_object_or_404(Customer, pk=self.kwargs["pk"])

    def get_context_data(self, **kwargs):
        context = super().get_context_data(**kwargs)
        context["orders"] = customer_orders_recent(customer=self.object)
        return context
